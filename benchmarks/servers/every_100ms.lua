-- wrk: each connection waits 100 ms after an answer before it sends its next request,
-- as a client that keeps its connection open and comes back now and then does.
-- (wrk starts a request's latency when the request is sent, so the wait is not in it.)
function delay()
  return 100
end
