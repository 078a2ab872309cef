"""Raw requests written for prefork's WSGI front end, and what each must give.

VALID: (name, bytes sent, the environ the application must see (a subset), the body
it must read).  INVALID: (name, bytes sent, the status the client must get).  Every
one of them was written here, from RFC 9110/9112 and PEP 3333.
"""

H = b"Host: example.test\r\n"

VALID = [
    ("simple get", b"GET / HTTP/1.1\r\n" + H + b"\r\n",
     {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_PROTOCOL":
      "HTTP/1.1", "HTTP_HOST": "example.test", "SCRIPT_NAME": "", "wsgi.url_scheme": "http"},
     b""),
    ("http/1.0 without host", b"GET /old HTTP/1.0\r\n\r\n",
     {"SERVER_PROTOCOL": "HTTP/1.0", "PATH_INFO": "/old"}, b""),
    ("http/1.0 with host", b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n",
     {"HTTP_HOST": "a.test"}, b""),
    ("query string", b"GET /search?q=prefork&page=2 HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/search", "QUERY_STRING": "q=prefork&page=2"}, b""),
    ("empty query", b"GET /a? HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/a", "QUERY_STRING": ""}, b""),
    ("percent-decoded path", b"GET /caf%C3%A9/a%20b HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/caf\xc3\xa9/a b", "RAW_URI": "/caf%C3%A9/a%20b"}, b""),
    ("encoded slash stays a slash", b"GET /a%2Fb HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/a/b", "RAW_URI": "/a%2Fb"}, b""),
    ("query not decoded", b"GET /p?x=%41%20 HTTP/1.1\r\n" + H + b"\r\n",
     {"QUERY_STRING": "x=%41%20"}, b""),
    ("absolute form", b"GET http://example.test/abs?x=1 HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/abs", "QUERY_STRING": "x=1"}, b""),
    ("asterisk form", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
     {"REQUEST_METHOD": "OPTIONS", "PATH_INFO": "", "RAW_URI": "*"}, b""),
    ("head", b"HEAD /h HTTP/1.1\r\n" + H + b"\r\n", {"REQUEST_METHOD": "HEAD"}, b""),
    ("delete", b"DELETE /x/1 HTTP/1.1\r\n" + H + b"\r\n", {"REQUEST_METHOD": "DELETE"}, b""),
    ("patch with body", b"PATCH /x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc",
     {"REQUEST_METHOD": "PATCH", "CONTENT_LENGTH": "3"}, b"abc"),
    ("post form", b"POST /form HTTP/1.1\r\n" + H + b"Content-Type: application/x-www-form-"
     b"urlencoded\r\nContent-Length: 13\r\n\r\nname=prefork&",
     {"CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": "13"},
     b"name=prefork&"),
    ("content-length zero", b"POST /z HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
     {"CONTENT_LENGTH": "0"}, b""),
    ("chunked body", b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", {"HTTP_TRANSFER_ENCODING": "chunked",
                                                 "wsgi.input_terminated": True},
     b"hello world"),
    ("chunked, upper-case hex", b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\nA\r\n0123456789\r\n0\r\n\r\n", {}, b"0123456789"),
    ("chunked with an extension", b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked"
     b"\r\n\r\n3;name=value\r\nabc\r\n0\r\n\r\n", {}, b"abc"),
    ("chunked with trailers", b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n", {"HTTP_X_TRAILER": None}, b"abc"),
    ("chunked, case of the coding", b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked"
     b"\r\n\r\n1\r\nz\r\n0\r\n\r\n", {}, b"z"),
    ("binary body", b"PUT /b HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\n\x00\xff\r\n",
     {"REQUEST_METHOD": "PUT"}, b"\x00\xff\r\n"),
    ("repeated header joined", b"GET / HTTP/1.1\r\n" + H + b"Accept: text/html\r\n"
     b"Accept: application/json\r\n\r\n", {"HTTP_ACCEPT": "text/html, application/json"}, b""),
    ("cookies joined with ;", b"GET / HTTP/1.1\r\n" + H + b"Cookie: a=1\r\nCookie: b=2\r\n\r\n",
     {"HTTP_COOKIE": "a=1; b=2"}, b""),
    ("header name case", b"GET / HTTP/1.1\r\n" + H + b"x-CuStOm-HeAdEr: v\r\n\r\n",
     {"HTTP_X_CUSTOM_HEADER": "v"}, b""),
    ("underscore header dropped", b"GET / HTTP/1.1\r\n" + H + b"X_Forwarded_For: 6.6.6.6\r\n\r\n",
     {"HTTP_X_FORWARDED_FOR": None}, b""),
    ("leading and trailing whitespace", b"GET / HTTP/1.1\r\n" + H + b"X-A:   padded\t \r\n\r\n",
     {"HTTP_X_A": "padded"}, b""),
    ("inner whitespace kept", b"GET / HTTP/1.1\r\n" + H + b"X-A: a  b\tc\r\n\r\n",
     {"HTTP_X_A": "a  b\tc"}, b""),
    ("empty header value", b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\n\r\n",
     {"HTTP_X_EMPTY": ""}, b""),
    ("latin-1 value", b"GET / HTTP/1.1\r\n" + H + b"X-Name: caf\xe9\r\n\r\n",
     {"HTTP_X_NAME": "caf\xe9"}, b""),
    ("utf-8 value as latin-1", b"GET / HTTP/1.1\r\n" + H + b"X-Name: caf\xc3\xa9\r\n\r\n",
     {"HTTP_X_NAME": "caf\xc3\xa9"}, b""),
    ("content-type not http_", b"POST / HTTP/1.1\r\n" + H + b"Content-Type: text/plain\r\n"
     b"Content-Length: 1\r\n\r\nx", {"CONTENT_TYPE": "text/plain", "HTTP_CONTENT_TYPE": None},
     b"x"),
    ("expect 100-continue", b"POST /u HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
     b"Content-Length: 2\r\n\r\nok", {"HTTP_EXPECT": "100-continue"}, b"ok"),
    ("expect is case-insensitive", b"POST /u HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\n"
     b"Content-Length: 1\r\n\r\nk", {}, b"k"),
    ("connection close", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
     {"HTTP_CONNECTION": "close"}, b""),
    ("keep-alive asked (served, then closed)", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     {"HTTP_CONNECTION": "keep-alive"}, b""),
    ("upgrade ignored", b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: "
     b"websocket\r\n\r\n", {"HTTP_UPGRADE": "websocket"}, b""),
    ("host with port", b"GET / HTTP/1.1\r\nHost: example.test:8080\r\n\r\n",
     {"HTTP_HOST": "example.test:8080"}, b""),
    ("ipv6 host", b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", {"HTTP_HOST": "[::1]:8000"}, b""),
    ("long but allowed target", b"GET /" + b"a" * 4000 + b" HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/" + "a" * 4000}, b""),
    ("many headers, within the limit", b"GET / HTTP/1.1\r\n" + H +
     b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(90)) + b"\r\n",
     {"HTTP_X_H89": "89"}, b""),
    ("forwarded by a trusted proxy", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For: 203.0.113.7"
     b"\r\nX-Forwarded-Proto: https\r\n\r\n",
     {"REMOTE_ADDR": "203.0.113.7", "wsgi.url_scheme": "https"}, b""),
    ("forwarded chain: nearest untrusted", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For: "
     b"198.51.100.1, 203.0.113.7, 127.0.0.1\r\n\r\n", {"REMOTE_ADDR": "203.0.113.7"}, b""),
    ("rfc 7239 forwarded", b"GET / HTTP/1.1\r\n" + H + b"Forwarded: for=192.0.2.60;"
     b"proto=https;by=203.0.113.43\r\n\r\n",
     {"REMOTE_ADDR": "192.0.2.60", "wsgi.url_scheme": "https"}, b""),
    ("rfc 7239 forwarded, ipv6 and port", b"GET / HTTP/1.1\r\n" + H + b'Forwarded: for="[2001:'
     b'db8:cafe::17]:4711"\r\n\r\n', {"REMOTE_ADDR": "2001:db8:cafe::17"}, b""),
    ("a client's forwarded under the proxy's x-forwarded", b"GET / HTTP/1.1\r\n" + H +
     b"Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-For: 203.0.113.9\r\n"
     b"X-Forwarded-Proto: http\r\n\r\n", {"REMOTE_ADDR": "203.0.113.9",
                                            "wsgi.url_scheme": "http"}, b""),
    ("mounted under a prefix, the proxy stripped it", b"GET /cart?x=1 HTTP/1.1\r\n" + H +
     b"X-Forwarded-Prefix: /shop\r\n\r\n", {"SCRIPT_NAME": "/shop", "PATH_INFO": "/cart"},
     b""),
    ("mounted under a prefix, the proxy passed it", b"GET /shop/cart HTTP/1.1\r\n" + H +
     b"X-Forwarded-Prefix: /shop/\r\n\r\n", {"SCRIPT_NAME": "/shop", "PATH_INFO": "/cart"},
     b""),
    ("the prefix itself", b"GET /shop HTTP/1.1\r\n" + H + b"X-Forwarded-Prefix: shop\r\n\r\n",
     {"SCRIPT_NAME": "/shop", "PATH_INFO": ""}, b""),
    ("unknown proto ignored", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-Proto: gopher\r\n\r\n",
     {"wsgi.url_scheme": "http"}, b""),
    ("body arrives with the head", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n12345",
     {}, b"12345"),
    ("pipelined request after a body", b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\n"
     b"aGET /second HTTP/1.1\r\n" + H + b"\r\n", {"PATH_INFO": "/x"}, b"a"),
    ("absolute form: its host, not Host's", b"GET http://origin.test:8080/abs HTTP/1.1\r\n"
     b"Host: other.test\r\n\r\n", {"HTTP_HOST": "origin.test:8080", "PATH_INFO": "/abs"}, b""),
    ("absolute form with user information", b"GET http://u:p@origin.test/ HTTP/1.1\r\n" + H +
     b"\r\n", {"HTTP_HOST": "origin.test"}, b""),
    ("empty host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", {"HTTP_HOST": ""}, b""),
    ("ipv4 host", b"GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n",
     {"HTTP_HOST": "192.0.2.1:80"}, b""),
    ("webdav method", b"PROPFIND /dav HTTP/1.1\r\n" + H + b"Depth: 1\r\n\r\n",
     {"REQUEST_METHOD": "PROPFIND", "HTTP_DEPTH": "1"}, b""),
    ("tab before a value", b"GET / HTTP/1.1\r\n" + H + b"X-T:\tv\r\n\r\n", {"HTTP_X_T": "v"}, b""),
    ("path with ;params", b"GET /a;b=c/d HTTP/1.1\r\n" + H + b"\r\n",
     {"PATH_INFO": "/a;b=c/d"}, b""),
    ("fragment not sent on", b"GET /f#frag HTTP/1.1\r\n" + H + b"\r\n", {"PATH_INFO": "/f"}, b""),
]

INVALID = [
    # Request smuggling: one body, two framings, or framing the server cannot trust.
    ("content-length and transfer-encoding", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4"
     b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("transfer-encoding then content-length", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: "
     b"chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
    ("last coding not chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip"
     b"\r\n\r\n", 400),
    ("only gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("chunked twice in one field", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, "
     b"chunked\r\n\r\n0\r\n\r\n", 400),
    ("a coding this server does not decode", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: "
     b"gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("transfer-encoding in two fields", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    ("content-length twice, same value", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n"
     b"Content-Length: 1\r\n\r\nx", 400),
    ("content-length twice, other value", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n"
     b"Content-Length: 2\r\n\r\nxy", 400),
    ("content-length list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\nx", 400),
    ("content-length with a sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\nx",
     400),
    ("content-length not a number", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1x\r\n\r\nx",
     400),
    ("content-length negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("content-length hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400),
    ("transfer-encoding in http/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n", 400),
    ("transfer-encoding and keep-alive in http/1.0", b"POST / HTTP/1.0\r\nConnection: keep-"
     b"alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.0\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-Long: part one\r\n part two\r\n\r\n", 400),
    ("whitespace before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-Bad : v\r\n\r\n", 400),
    ("space in a name", b"GET / HTTP/1.1\r\n" + H + b"X Bad: v\r\n\r\n", 400),
    ("bad character in a name", b"GET / HTTP/1.1\r\n" + H + b"X-B(d: v\r\n\r\n", 400),
    ("control character in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    ("nul in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("bare CR in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("bare LF line ends", b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n", 400),
    ("a line with no colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    ("bad chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
     b"ab\r\n0\r\n\r\n", 400),
    ("chunk size overflow", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"fffffffffffffffff1\r\nx\r\n0\r\n\r\n", 400),
    ("negative chunk size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"-1\r\nx\r\n0\r\n\r\n", 400),
    ("chunk longer than its size", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
     b"\r\n2\r\nabc\r\n0\r\n\r\n", 400),
    ("bad chunk extension", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
     b"3;\x01\r\nabc\r\n0\r\n\r\n", 400),
    ("space in the target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control character in the target", b"GET /a\x01 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("non-ascii target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("missing host, http/1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
    ("two hosts, http/1.0", b"GET / HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
    ("a space in the host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("a slash and an at in the host", b"GET / HTTP/1.1\r\nHost: evil.test/x@a.test\r\n\r\n",
     400),
    ("a port that is no number", b"GET / HTTP/1.1\r\nHost: a.test:8o\r\n\r\n", 400),
    ("an unclosed ip literal", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    ("a bad host in http/1.0", b"GET / HTTP/1.0\r\nHost: <a>\r\n\r\n", 400),
    ("asterisk form for GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("two spaces in the request line", b"GET  /a HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("lower-case method", b"get / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("unknown method", b"BREW /pot HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("connect", b"CONNECT example.test:443 HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("http/2.0 line", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http/0.9", b"GET /\r\n\r\n", 505),
    ("http/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    ("version garbage", b"GET / HTTP/x.y\r\n" + H + b"\r\n", 400),
    ("expect something else", b"POST / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 0"
     b"\r\n\r\n", 417),
    ("target too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("too many header fields", b"GET / HTTP/1.1\r\n" + H +
     b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(120)) + b"\r\n", 431),
    ("a header field too long", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 9000 + b"\r\n\r\n",
     431),
]
