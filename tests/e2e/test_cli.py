"""The `prefork` command as a user runs it: settings from every source, the notify
sequence, and every kind of bad input ending in one line and the right status."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from ..prefork.harness import HERE as APPS_DIR
from ..prefork.harness import ROOT, Running, wait_for

TIMEOUT = 30


def prefork(*args, cwd, env=None, pass_fds=(), others_running=False):
    """Run `python -m prefork ARGS` to its end; returns (status, stdout, stderr).

    Checks that no prefork process appeared meanwhile, unless *others_running*
    (a master the test runs may fork workers at the same time)."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([APPS_DIR, ROOT]))
    for key in [k for k in full_env if k.startswith(("PREFORK_", "NOTIFY_", "LISTEN_"))
                or k == "INVOCATION_ID"]:
        del full_env[key]
    full_env.update(env or {})
    before = {p.pid for p in psutil.process_iter()}
    proc = subprocess.run([sys.executable, "-m", "prefork", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=TIMEOUT, pass_fds=pass_fds)
    # Nothing the command started may outlive it.
    left = [] if others_running else [
        p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
        and "prefork:" in " ".join(p.info["cmdline"] or [])]
    assert not left, f"processes left behind: {left}"
    return proc.returncode, proc.stdout, proc.stderr


def one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("prefork: error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0][len("prefork: error: "):]


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "app.py").write_text(
        "from apps import Probe as Handler\nVALUE = 42\n"
        "raise_at_import = False\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('no database configured')\n")
    (tmp_path / "stuck.py").write_text("import threading\nthreading.Event().wait()  # forever\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "vanishes.py").write_text("import os\nos._exit(0)\n")
    (tmp_path / "webapp.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [environ.get('site.greeting', 'hello').encode()]\n"
        "def make(greeting='hello', *, loud=False):\n"
        "    greeting = greeting.upper() if loud else greeting\n"
        "    return lambda env, start: application({**env, 'site.greeting': greeting}, start)\n"
        "def unconfigured():\n"
        "    raise RuntimeError('SITE_SECRET is not set')\n"
        "def one_argument(environ):\n"
        "    return []\n"
        "TITLE = 'shop'\n")
    return tmp_path


@pytest.mark.parametrize("args,env,status,message", [
    (["serve", "--wrokers", "3", "app:Handler"], {}, 2,
     "unknown option --wrokers (did you mean --workers?)"),
    (["serve", "--workers", "many", "app:Handler"], {}, 2,
     "--workers: expected a whole number or a range such as 2..16, got 'many'"),
    (["serve", "--workers", "0", "app:Handler"], {}, 2, "workers: expected a whole number from 1"),
    (["serve", "--timeout", "-3", "app:Handler"], {}, 2,
     "timeout: expected a number of seconds from 0 to 31536000 (a year)"),
    (["serve", "--workers", "5", "--max-workers", "2", "app:Handler"], {}, 2,
     "workers (5) must not exceed max_workers (2)"),
    (["serve", "--max-rss", "lots", "app:Handler"], {}, 2,
     "--max-rss: expected a size such as 512M or 1G"),
    (["serve", "--bind", "localhost", "app:Handler"], {}, 2,
     "--bind 'localhost' is not an address; use HOST:PORT"),
    (["serve", "app"], {}, 2, "handler 'app' is not of the form MODULE:NAME"),
    (["serve", "app:Handler"], {"PREFORK_WORKERS": "two"}, 2,
     "PREFORK_WORKERS: expected a whole number or a range such as 2..16, got 'two'"),
    (["serve", "app:Handler"], {"PREFORK_WROKERS": "2"}, 2,
     "unknown environment variable PREFORK_WROKERS (did you mean PREFORK_WORKERS?)"),
    (["serve", "--config", "missing.toml", "app:Handler"], {}, 2,
     "config file missing.toml does not exist"),
    (["serve", "--daemon", "app:Handler"], {"INVOCATION_ID": "x"}, 2,
     "--daemon under systemd"),
    (["check", "nosuchmodule:Handler"], {}, 2, "cannot import handler module 'nosuchmodule'"),
    (["check", "app:Nothing"], {}, 2, "module 'app' has no attribute 'Nothing'"),
    (["check", "app:VALUE"], {}, 2, "app:VALUE is int 42, not a request handler class"),
    (["check", "broken:Handler"], {}, 2, "RuntimeError: no database configured"),
    (["check", "--server", "app:VALUE", "app:Handler"], {}, 2, "is not a server class"),
    (["check", "--boot-timeout", "0.5", "stuck:Handler"], {}, 1,
     "importing stuck:Handler took more than boot_timeout (0.5s)"),
    (["serve", "--boot-timeout", "0.5", "stuck:Handler"], {}, 1,
     "importing stuck:Handler took more than boot_timeout (0.5s)"),
    (["serve", "--preload", "--boot-timeout", "0.5", "stuck:Handler"], {}, 1,
     "importing stuck:Handler took more than boot_timeout (0.5s)"),
    (["check", "exits:Handler"], {}, 2,
     "cannot import handler module 'exits': it called sys.exit(3) as it was imported"),
    (["serve", "--preload", "exits:Handler"], {}, 2,
     "cannot import handler module 'exits': it called sys.exit(3) as it was imported"),
    (["check", "vanishes:Handler"], {}, 2, "importing vanishes:Handler ended the process "
     "(exited with status 0) before it could say why"),
    (["check", "webapp:TITLE"], {}, 2,
     "webapp:TITLE is str 'shop', not a request handler class or a WSGI application"),
    (["check", "webapp:one_argument"], {}, 2,
     "webapp:one_argument cannot be called as application(environ, start_response)"),
    (["check", "webapp:unconfigured()"], {}, 2,
     "webapp:unconfigured(): the factory raised RuntimeError: SITE_SECRET is not set"),
    (["serve", "webapp:unconfigured()"], {}, 2,
     "webapp:unconfigured(): the factory raised RuntimeError: SITE_SECRET is not set"),
    (["check", "webapp:make(greeting)"], {}, 2, "a factory's arguments must be literals"),
    (["check", "webapp:make("], {}, 2, "webapp:make(: expected NAME or NAME(ARGUMENTS)"),
    (["check", "webapp:TITLE()"], {}, 2, "webapp:TITLE(): TITLE is not callable, so not a factory"),
    (["serve", "nosuch.wsgi:application"], {}, 2, "cannot import handler module 'nosuch.wsgi'"),
    (["serve", "--daemon", "--bind", "127.0.0.1:0", "--control", "nodir/m.ctl", "app:Handler"],
     {}, 1, "--control nodir/m.ctl: directory "),
    (["serve", "--access-log", "nodir/a.log", "webapp:application"], {}, 2,
     "--access-log nodir/a.log: cannot open it: No such file or directory"),
    (["serve", "--preload", "--access-log", "nodir/a.log", "webapp:application"], {}, 2,
     "--access-log nodir/a.log: cannot open it: No such file or directory"),
    (["check", "--user", "nosuchuser", "app:Handler"], {}, 2, "no such user 'nosuchuser'"),
    (["check", "--socket-group", "nosuchgroup", "app:Handler"], {}, 2,
     "no such group 'nosuchgroup'"),
    (["check", "--bind", "unix:nodir/s.sock", "app:Handler"], {}, 2,
     "--bind unix:nodir/s.sock: directory "),
    (["check", "--pidfile", "nodir/p.pid", "app:Handler"], {}, 2, "--pidfile nodir/p.pid: "
     "directory "),
    (["check", "--error-log", "nodir/e.log", "app:Handler"], {}, 2, "--error-log nodir/e.log: "
     "directory "),
    (["stop", "--control", "app.py"], {}, 1,
     "app.py is not a socket, so no master's control socket (a pidfile goes with --pidfile)"),
    (["serve", "--backlog", "99999999999999999999", "app:Handler"], {}, 2,
     "backlog: expected a whole number from 1 to 2147483647"),
    (["serve", "--max-rss", "512", "app:Handler"], {}, 2,
     "max_rss: expected 0 or at least 8M (a size without a unit is in bytes), got 512"),
    (["check", "--boot-timeout", "1e300", "app:Handler"], {}, 2,
     "boot_timeout: expected a number of seconds from 0 to 31536000 (a year), got 1e+300"),
    (["stop"], {}, 2, "no control socket of a master in the default places"),
    (["bogus"], {}, 2, "invalid choice: 'bogus'"),
])
def test_bad_input_is_one_line_and_a_status(appdir, args, env, status, message):
    code, _, stderr = prefork(*args, cwd=appdir, env=env)
    assert code == status
    assert message in one_error_line(stderr)


def systemd_environment_file(path):
    """The variables an EnvironmentFile= sets, read as systemd reads one: KEY=VALUE
    lines, with comments and blank lines skipped."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    return env


def test_the_handler_from_the_environment_or_the_config_file(appdir):
    # The template unit's environment file and settings, as the deploy guide installs them.
    deploy = os.path.join(ROOT, "docs", "deploy")
    env = systemd_environment_file(os.path.join(deploy, "shop.env"))
    assert env == {"PREFORK_HANDLER": "shop.handlers:Handler"}
    (appdir / "shop").mkdir()
    (appdir / "shop" / "__init__.py").write_text("")
    (appdir / "shop" / "handlers.py").write_text("from apps import Probe as Handler\n")
    shop_toml = os.path.join(deploy, "shop.toml")
    code, out, err = prefork("check", "--config", shop_toml, cwd=appdir, env=env)
    assert code == 0 and out.startswith("ok: shop.handlers:Handler imports;"), err
    # The TOML key; the argument wins over both.
    (appdir / "named.toml").write_text('handler = "app:Handler"\n')
    code, out, _ = prefork("check", "--config", "named.toml", cwd=appdir)
    assert code == 0 and out.startswith("ok: app:Handler imports;")
    code, out, _ = prefork("check", "--config", "named.toml", "shop.handlers:Handler",
                           cwd=appdir, env={"PREFORK_HANDLER": "nosuch:Handler"})
    assert code == 0 and out.startswith("ok: shop.handlers:Handler imports;")
    # Nothing named: one line saying where it may come from.
    code, _, err = prefork("check", cwd=appdir)
    assert code == 2
    assert one_error_line(err) == ("nothing to serve: give MODULE:HANDLER, or set handler "
                                   "in the config file or PREFORK_HANDLER in the environment")
    code, _, err = prefork("check", cwd=appdir, env={"PREFORK_HANDLER": "app"})
    assert code == 2 and one_error_line(err).startswith(
        "PREFORK_HANDLER 'app' is not of the form MODULE:NAME")


def test_serving_the_handler_the_environment_names(appdir, sockdir):
    with Running(sockdir, cli=["--workers", "1"], pythonpath=[str(appdir)],
                 env={"PREFORK_HANDLER": "app:Handler"}) as m:
        assert int(m.request()) in m.workers()


def test_a_config_file_with_an_unknown_key_or_a_bad_value(appdir):
    (appdir / "typo.toml").write_text("wrokers = 3\n")
    code, _, err = prefork("check", "--config", "typo.toml", "app:Handler", cwd=appdir)
    assert code == 2
    assert "unknown key 'wrokers' in typo.toml (did you mean workers?)" in one_error_line(err)
    (appdir / "bad.toml").write_text("workers = true\n")
    code, _, err = prefork("check", "--config", "bad.toml", "app:Handler", cwd=appdir)
    assert code == 2
    assert "key 'workers' in bad.toml: expected a whole number from 1 to 4096 or a range " \
        "MIN..MAX" in one_error_line(err)
    (appdir / "garbled.toml").write_text("workers = \n")
    code, _, err = prefork("check", "--config", "garbled.toml", "app:Handler", cwd=appdir)
    assert code == 2 and "is not valid TOML" in one_error_line(err)
    (appdir / "latin1.toml").write_bytes(b"name = 'caf\xe9'\n")
    code, _, err = prefork("check", "--config", "latin1.toml", "app:Handler", cwd=appdir)
    assert code == 2 and one_error_line(err) == \
        "config file latin1.toml is not valid TOML: not UTF-8 at byte 11"
    # A mode as a TOML number would be read as decimal: 440 is 0o670.
    (appdir / "mode.toml").write_text("socket-mode = 440\n")
    code, _, err = prefork("check", "--config", "mode.toml", "app:Handler", cwd=appdir)
    assert code == 2 and one_error_line(err) == \
        "key 'socket-mode' in mode.toml: expected an octal mode as a string such as " \
        "\"0660\" (a TOML number is read as decimal: 440 is 0o670), got 440"
    (appdir / "mode.toml").write_text("socket-mode = \"0440\"\n")
    assert prefork("check", "--config", "mode.toml", "app:Handler", cwd=appdir)[0] == 0


def test_a_handler_that_cannot_import_when_serving(appdir, sockdir):
    path = os.path.join(sockdir, "s.sock")
    code, _, err = prefork("serve", "--bind", f"unix:{path}", "broken:Handler", cwd=appdir)
    assert code == 2
    line = one_error_line(err)
    assert "cannot import handler module 'broken'" in line and "no database" in line
    assert not os.path.exists(path)  # the master's own socket file is gone


def test_check_accepts_a_good_setup(appdir):
    code, out, err = prefork("check", "--workers", "3", "--bind", "127.0.0.1:0",
                             "app:Handler", cwd=appdir)
    assert (code, err) == (0, "")
    assert "ok: app:Handler imports; 3 workers (max 6); bind 127.0.0.1:0" in out


def test_a_port_in_use(appdir):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code, _, err = prefork("serve", "--bind", f"127.0.0.1:{port}", "app:Handler", cwd=appdir)
    assert code == 1
    assert f"--bind 127.0.0.1:{port}: the address is in use by another process" in \
        one_error_line(err)


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_a_privileged_port_without_privilege(appdir):
    # The command runs without CAP_NET_BIND_SERVICE (root or not, it cannot bind < 1024).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([APPS_DIR, ROOT]))
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 81:
            pytest.skip("this machine lets anyone bind port 81")
    proc = subprocess.run(["setpriv", "--bounding-set=-net_bind_service", sys.executable, "-m",
                           "prefork", "serve", "--bind", "127.0.0.1:81", "app:Handler"],
                          cwd=appdir, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert "port 81 needs privilege (root or CAP_NET_BIND_SERVICE)" in one_error_line(proc.stderr)


def test_a_missing_socket_directory(appdir, sockdir):
    code, _, err = prefork("serve", "--bind", f"unix:{sockdir}/no/such/dir/s.sock",
                           "app:Handler", cwd=appdir)
    assert code == 1
    assert f"directory {sockdir}/no/such/dir does not exist" in one_error_line(err)


def test_a_unix_socket_held_by_a_live_server_and_a_stale_one(appdir, sockdir):
    path = os.path.join(sockdir, "live.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        code, _, err = prefork("serve", "--bind", f"unix:{path}", "app:Handler", cwd=appdir)
        assert code == 1
        assert f"{path} is held by a live server" in one_error_line(err)
        assert os.path.exists(path)  # not touched
    finally:
        live.close()
    # Now nothing answers on it: `check` does not bind, so take it over with serve,
    # and stop at once through a bad pidfile directory (after the bind).
    code, _, err = prefork("serve", "--bind", f"unix:{path}", "--pidfile",
                           f"{sockdir}/no/dir/x.pid", "app:Handler", cwd=appdir)
    assert code == 1 and "--pidfile" in one_error_line(err)
    assert not os.path.exists(path)  # the stale file was replaced, then removed at exit


def test_a_pidfile_held_by_a_live_master(appdir, sockdir):
    pidfile = os.path.join(sockdir, "m.pid")
    with Running(sockdir, cli=["--pidfile", pidfile, "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        assert int(open(pidfile).read()) == m.pid
        code, _, err = prefork("serve", "--bind", "127.0.0.1:0", "--pidfile", pidfile,
                               "app:Handler", cwd=appdir, others_running=True)
        assert code == 1
        assert f"--pidfile {pidfile} is held by a live master (pid {m.pid})" in \
            one_error_line(err)
        # `prefork reload` and `stop` find the master through the pidfile.
        assert prefork("reload", "--pidfile", pidfile, cwd=appdir, others_running=True)[0] == 0
        m.expect("RELOADING=1")
        m.expect("READY=1")
        assert prefork("stop", "--pidfile", pidfile, cwd=appdir, others_running=True)[0] == 0
        assert m.wait_exit() == 0
    assert not os.path.exists(pidfile)


def test_settings_precedence_cli_over_env_over_file(appdir, sockdir):
    (appdir / "prefork.toml").write_text("workers = 3\nmax-workers = 6\nname = 'fromfile'\n")
    cfg = ["--config", str(appdir / "prefork.toml")]
    with Running(sockdir, cli=[*cfg, "app:Handler"], pythonpath=[str(appdir)]) as m:
        assert len(m.workers()) == 3
        assert all(t.endswith("[fromfile]") for t in m.workers().values())
    with Running(sockdir, cli=[*cfg, "app:Handler"], pythonpath=[str(appdir)],
                 env={"PREFORK_WORKERS": "2"}) as m:
        assert len(m.workers()) == 2
    with Running(sockdir, cli=[*cfg, "--workers", "1", "app:Handler"], pythonpath=[str(appdir)],
                 env={"PREFORK_WORKERS": "2"}) as m:
        assert len(m.workers()) == 1


def test_hup_rereads_the_file_and_a_bad_file_keeps_the_old_settings(appdir, sockdir):
    conf = appdir / "prefork.toml"
    conf.write_text("workers = 1\nmax_workers = 4\n")
    with Running(sockdir, cli=["--config", str(conf), "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        assert m.messages[-1].startswith("READY=1")
        conf.write_text("workers = 3\nmax_workers = 4\n")
        m.signal(signal.SIGHUP)
        m.expect("RELOADING=1")
        assert "3 workers ready" in m.expect("READY=1")
        conf.write_text("workers = 'many'\n")
        m.signal(signal.SIGHUP)
        status = m.expect("READY=1")
        assert "reload failed: key 'workers'" in status
        m.wait_workers(lambda w: len(w) == 3, "three workers, as before the bad file")
        assert "reload abandoned, workers unchanged" in m.log()  # logged before READY=1
        m.signal(signal.SIGTERM)
        m.expect("STOPPING=1")
        assert m.wait_exit() == 0
    # The notify sequence, in order: ready; reloading (said as the SIGHUP came), the new
    # generation once the file was read, ready; reloading, ready (failed); stopping.
    kinds = [msg.split("\n")[0].split("=")[0] for msg in m.messages]
    assert kinds == ["READY", "RELOADING", "STATUS", "READY", "RELOADING", "READY",
                     "STOPPING"]
    assert "MONOTONIC_USEC=" in m.messages[1]
    assert m.messages[2].startswith("STATUS=reloading to generation 2;")


def test_a_reload_to_a_handler_that_cannot_boot_fails_and_changes_nothing(appdir, sockdir):
    conf = appdir / "prefork.toml"
    conf.write_text('handler = "app:Handler"\nworkers = 2\n')
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--config", str(conf), "--control", ctl],
                 pythonpath=[str(appdir)]) as m:
        conf.write_text('handler = "broken:Handler"\nworkers = 2\n')
        code, out, err = prefork("reload", "--control", ctl, cwd=appdir, others_running=True)
        assert code == 1 and out == ""
        line = one_error_line(err)
        assert line.startswith("reload failed (a new worker failed to boot") and \
            "no database configured" in line and line.endswith("generation 1 keeps serving")
        # Workers of generation 1 that die are replaced by workers of generation 1,
        # serving its handler, not the one the abandoned reload read.
        old = set(m.worker_pids())
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        m.wait_workers(lambda w: len(w) == 2 and not set(w) & old, "two new workers")
        assert int(m.request()) in m.worker_pids()
        conf.write_text('handler = "app:Handler"\nworkers = 2\n')
        assert prefork("reload", "--control", ctl, cwd=appdir, others_running=True)[:2] == \
            (0, "reloaded: generation 3 serving\n")  # 2 was the abandoned one
        assert int(m.request()) in m.worker_pids()


def test_code_on_disk_that_cannot_boot_never_takes_the_service_down(appdir, sockdir):
    # A half-done deploy, and max_requests: each worker that reaches its limit would be
    # replaced by one that cannot import, until none is left.  It serves on instead.
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--control", ctl, "--workers", "2", "--max-requests", "5",
                               "app:Handler"], pythonpath=[str(appdir)]) as m:
        workers = set(m.worker_pids())
        (appdir / "app.py").write_text("raise RuntimeError('half deployed')\n")
        code, _, err = prefork("reload", "--control", ctl, cwd=appdir, others_running=True)
        assert code == 1 and "half deployed" in one_error_line(err)
        tried = m.log().count("failed to boot")
        answers = {int(m.request()) for _ in range(40)}  # each worker's limit, 4 times over
        assert answers == workers and workers <= set(m.worker_pids())  # (beside new ones
        # trying to boot)
        wait_for(lambda: m.log().count("failed to boot") > tried or None,
                 "a replacement tried, and failed")


def test_daemon_mode_with_its_pidfile(appdir, sockdir):
    pidfile, logfile = os.path.join(sockdir, "d.pid"), os.path.join(sockdir, "d.log")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        fd = listener.fileno()
        code, out, err = prefork("serve", "--daemon", "--pidfile", pidfile, "--error-log",
                                 logfile, "--bind", f"fd://{fd}", "app:Handler", cwd=appdir,
                                 pass_fds=[fd], others_running=True)
        assert (code, err) == (0, "")  # the command returns: the master lives on, detached
        # The pidfile stays empty until the detached master writes its own pid.
        pid = wait_for(lambda: int(open(pidfile).read() or 0), "the pidfile")
        master = psutil.Process(pid)
        try:
            wait_for(lambda: "prefork: master" in " ".join(master.cmdline()), "the title")
            assert master.ppid() != os.getpid()  # detached
            wait_for(lambda: "ready:" in open(logfile).read(), "the pool to be ready")
            with socket.create_connection(listener.getsockname(), timeout=10) as c:
                c.sendall(b"hi\n")
                assert int(c.recv(100)) in {p.pid for p in master.children()}
            # A second daemon on the same pidfile is refused.
            code, _, err = prefork("serve", "--daemon", "--pidfile", pidfile, "--bind",
                                   "127.0.0.1:0", "app:Handler", cwd=appdir, others_running=True)
            assert code == 1 and "is held by a live master" in one_error_line(err)
            # An upgrade of a daemon: the new master stays detached, the pidfile follows.
            code, out, _ = prefork("upgrade", "--pidfile", pidfile, cwd=appdir,
                                   others_running=True)
            new = psutil.Process(int(open(pidfile).read()))
            assert code == 0 and out == f"upgraded: master {new.pid} took over from master {pid}\n"
            wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE,
                     "the old daemon to leave")
            with socket.create_connection(listener.getsockname(), timeout=10) as c:
                c.sendall(b"hi\n")
                assert int(c.recv(100)) in {p.pid for p in new.children()}
            master = new
            assert prefork("stop", "--pidfile", pidfile, cwd=appdir, others_running=True)[0] == 0
            wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE,
                     "the daemon to stop")
        finally:
            if master.is_running():
                master.kill()
    assert not os.path.exists(pidfile)
    log = open(logfile).read()
    assert "control socket: graceful stop" in log  # the pidfile led to PIDFILE.ctl
    os.unlink(logfile)


def test_a_stale_pidfile_is_taken_over(appdir, sockdir):
    pidfile = os.path.join(sockdir, "stale.pid")
    with open(pidfile, "w") as f:
        f.write("999999\n")  # nobody holds its lock
    with Running(sockdir, cli=["--pidfile", pidfile, "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        assert int(open(pidfile).read()) == m.pid
    assert not os.path.exists(pidfile)


def test_a_stale_pidfile_never_signals_the_process_its_pid_now_names(appdir):
    # A master killed with SIGKILL leaves its pidfile; its pid may be reused by anyone.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = str(appdir / "reused.pid")
        with open(pidfile, "w") as f:
            f.write(f"{bystander.pid}\n")
        for command in ("reload", "stop"):
            code, _, err = prefork(command, "--pidfile", pidfile, cwd=appdir)
            assert code == 1
            assert one_error_line(err) == f"--pidfile {pidfile}: no running master holds it"
        assert bystander.poll() is None  # neither SIGHUP nor SIGTERM reached it
    finally:
        bystander.kill()
        bystander.wait()


def test_a_pidfile_path_to_a_file_that_is_no_pidfile_is_refused_untouched(appdir):
    precious = appdir / "settings.toml"
    precious.write_text("workers = 4\n")
    code, _, err = prefork("serve", "--bind", "127.0.0.1:0", "--pidfile", str(precious),
                           "app:Handler", cwd=appdir)
    assert code == 1
    assert one_error_line(err) == f"--pidfile {precious} holds something other than a " \
        "pid; not overwritten (is the path right?)"
    assert precious.read_text() == "workers = 4\n"


def test_status_scale_reload_and_stop_through_the_control_socket(appdir, sockdir):
    import json
    import stat
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--control", ctl, "--workers", "2", "--name", "shop",
                               "app:Handler"], pythonpath=[str(appdir)]) as m:
        assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
        m.request()
        code, out, _ = prefork("status", "--control", ctl, cwd=appdir, others_running=True)
        assert code == 0
        assert f"master {m.pid} [shop]: generation 1, 2 workers wanted (max 4)" in out
        assert out.splitlines()[1].split() == ["PID", "SLOT", "GEN", "STATE", "REQUESTS", "RSS",
                                               "AGE"]
        code, out, _ = prefork("status", "--json", "--control", ctl, cwd=appdir,
                               others_running=True)
        data = json.loads(out)
        assert sorted(w["pid"] for w in data["workers"]) == m.worker_pids()
        assert data["totals"]["requests"] == 1 and all(w["rss"] > 0 for w in data["workers"])
        assert prefork("scale", "3", "--control", ctl, cwd=appdir, others_running=True)[:2] == \
            (0, "workers: 3\n")
        m.wait_workers(lambda w: len(w) == 3, "a third worker")
        code, _, err = prefork("scale", "99", "--control", ctl, cwd=appdir, others_running=True)
        assert code == 2 and "from 1 to max_workers (4), not 99" in one_error_line(err)
        assert prefork("reload", "--control", ctl, cwd=appdir, others_running=True)[0] == 0
        m.expect("RELOADING=1")
        m.expect("READY=1")
        assert prefork("stop", "--control", ctl, cwd=appdir, others_running=True)[0] == 0
        assert m.wait_exit() == 0
    assert not os.path.exists(ctl)
    code, _, err = prefork("status", "--control", ctl, cwd=appdir)
    assert code == 1 and f"no control socket at {ctl}" in one_error_line(err)


def test_stop_returns_once_the_master_has_exited_and_its_request_is_answered(appdir, sockdir):
    import socket
    ctl = os.path.join(sockdir, "ctl.sock")
    with Running(sockdir, cli=["--control", ctl, "--workers", "1", "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        with socket.create_connection(m.address, timeout=30) as slow:
            slow.sendall(b"sleep 1\n")  # in flight as the stop begins
            from prefork.command.client import ask
            wait_for(lambda: ask(ctl, {"cmd": "status"})["workers"][0]["busy"] or None,
                     "the worker busy with it")
            code, out, _ = prefork("stop", "--control", ctl, cwd=appdir, others_running=True)
            assert (code, out) == (0, f"stopped: master {m.pid}\n")
            assert m.proc.poll() is not None  # gone already: its sockets are free
            assert int(slow.makefile("rb").readline()) in m.known_workers


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_and_group_are_switched_after_binding(appdir, sockdir):
    import pwd
    nobody = pwd.getpwnam("nobody")
    os.chmod(appdir, 0o755)
    # --preload: the handler is imported before the switch, while the interpreter's
    # own files are still readable (this machine's Python lives under /root).
    os.chmod(sockdir, 0o711)
    with Running(sockdir, cli=["--preload", "--user", "nobody", "--group", "nogroup",
                               "app:Handler"], pythonpath=[str(appdir)],
                 notify_mode=0o666) as m:
        assert psutil.Process(m.pid).uids().real == nobody.pw_uid
        for pid in m.worker_pids():
            assert psutil.Process(pid).uids().effective == nobody.pw_uid
        assert int(m.request()) in m.worker_pids()


def test_workers_never_see_systemd_variables(appdir, sockdir):
    (appdir / "envprobe.py").write_text(
        "import os, socketserver\n"
        "class Handler(socketserver.StreamRequestHandler):\n"
        "    def handle(self):\n"
        "        self.rfile.readline()\n"
        "        seen = [k for k in ('NOTIFY_SOCKET', 'LISTEN_PID', 'LISTEN_FDS', "
        "'WATCHDOG_USEC') if k in os.environ]\n"
        "        self.wfile.write(repr(seen).encode())\n")
    with Running(sockdir, cli=["envprobe:Handler"], pythonpath=[str(appdir)],
                 env={"WATCHDOG_USEC": "60000000"}) as m:
        assert m.request() == b"[]"
        assert any(msg.startswith("WATCHDOG=1") for msg in m.messages)  # the master reports


def test_notify_socket_in_the_abstract_namespace():
    from prefork.systemd import Notifier
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"prefork-test-{os.getpid()}"
    receiver.bind("\0" + name)
    try:
        receiver.settimeout(10)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_interval == 2.0
        assert notifier.send(READY=1, STATUS="up")
        assert receiver.recv(100) == b"READY=1\nSTATUS=up"
        notifier.close()
        assert Notifier({}).send(READY=1) is False  # no systemd: nothing to do
    finally:
        receiver.close()


def test_usr1_reopens_the_error_log_after_rotation(appdir, sockdir):
    logfile = os.path.join(sockdir, "e.log")
    with Running(sockdir, cli=["--error-log", logfile, "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        os.rename(logfile, logfile + ".1")  # what logrotate does
        m.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(logfile) and "log files reopened" in open(logfile).read(),
                 "the new log file")
        m.signal(signal.SIGTERM)
        assert m.wait_exit() == 0
    assert "graceful stop" in open(logfile).read()
    assert "ready:" in open(logfile + ".1").read()
    os.unlink(logfile)
    os.unlink(logfile + ".1")


def test_a_workers_stack_dump_goes_to_the_error_log_before_and_after_rotation(appdir, sockdir):
    import socket
    logfile = os.path.join(sockdir, "e.log")
    with Running(sockdir, cli=["--error-log", logfile, "--timeout", "1", "--workers", "1",
                               "app:Handler"], pythonpath=[str(appdir)]) as m:
        for path in (logfile, logfile + ".1"):
            if path.endswith(".1"):
                os.rename(logfile, path)  # logrotate
                m.signal(signal.SIGUSR1)
                wait_for(lambda: os.path.exists(logfile) and
                         "log files reopened" in open(logfile).read(), "the new log file")
                m.request()  # served by the worker that replaced the killed one
            with socket.create_connection(m.address, timeout=30) as c:
                c.sendall(b"hang\n")
                assert c.makefile("rb").readline() == b"hanging\n"
                wait_for(lambda: "in spin_forever" in open(logfile).read() or None,
                         "the stack of the hung worker in the current log file")
        m.signal(signal.SIGTERM)
        assert m.wait_exit() == 0
    assert "spin_forever" not in m.log()  # not on standard error
    assert open(logfile + ".1").read().count("in spin_forever") == 1
    os.unlink(logfile)
    os.unlink(logfile + ".1")


def test_log_lines_carry_their_time_in_utc_whatever_the_time_zone(appdir, sockdir):
    import datetime
    logfile = appdir / "e.log"  # (to standard error under systemd, lines carry no time)
    with Running(sockdir, cli=["--error-log", str(logfile), "app:Handler"],
                 pythonpath=[str(appdir)], env={"TZ": "America/Chicago"}) as m:
        m.request()
    first = logfile.read_text().splitlines()[0]
    stamp = datetime.datetime.strptime(first.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 120, first


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_bind_form_serves(appdir, sockdir):
    (appdir / "dgram.py").write_text("from apps import DatagramProbe as Handler\n")
    abstract = f"prefork-test-{os.getpid()}"
    ustream, ugram = os.path.join(sockdir, "a.sock"), os.path.join(sockdir, "g.sock")
    udp_port = _free_udp_port()  # the command binds it: only a guess at a free port
    binds = ["--bind", f"unix:@{abstract}", "--bind", f"unix:{ustream}"]
    with Running(sockdir, cli=[*binds, "app:Handler"], pythonpath=[str(appdir)]) as m:
        for family, address in ((socket.AF_UNIX, "\0" + abstract), (socket.AF_UNIX, ustream)):
            with socket.socket(family) as c:
                c.settimeout(10)
                c.connect(address)
                c.sendall(b"hi\n")
                assert int(c.recv(100)) in m.worker_pids()
    binds = ["--bind", f"udp://127.0.0.1:{udp_port}", "--bind", f"unixgram:{ugram}"]
    with Running(sockdir, cli=[*binds, "dgram:Handler"], pythonpath=[str(appdir)]) as m:
        client_path = os.path.join(sockdir, "client")
        for family, address in ((socket.AF_INET, ("127.0.0.1", udp_port)),
                                (socket.AF_UNIX, ugram)):
            with socket.socket(family, socket.SOCK_DGRAM) as c:
                c.settimeout(10)
                if family == socket.AF_UNIX:
                    c.bind(client_path)
                c.sendto(b"ping", address)
                assert c.recv(100).endswith(b" ping")
        os.unlink(client_path)
    assert not os.path.exists(ustream) and not os.path.exists(ugram)


def test_ipv6_loopback(appdir, sockdir):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with Running(sockdir, cli=["--bind", f"[::1]:{port}", "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        with socket.create_connection(("::1", port), timeout=10) as c:
            c.sendall(b"hi\n")
            assert int(c.recv(100)) in m.worker_pids()


def test_server_option_pre_forks_the_stdlib_http_server(appdir, sockdir):
    import urllib.request
    (appdir / "page.txt").write_text("served by http.server, pre-forked\n")
    # The handler serves its current directory, which is the socket directory here.
    with Running(sockdir, cli=["--server", "http.server:HTTPServer", "--preload",
                               "apps:QuietHTTP"], pythonpath=[str(appdir)]) as m:
        os.rename(appdir / "page.txt", os.path.join(sockdir, "page.txt"))
        try:
            url = f"http://127.0.0.1:{m.address[1]}/page.txt"
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.read() == b"served by http.server, pre-forked\n"
        finally:
            os.unlink(os.path.join(sockdir, "page.txt"))


def test_debug_shows_the_traceback_and_log_level_quiets(appdir, sockdir):
    (appdir / "debug.toml").write_text("debug = true\n")
    for args, env in ((["--debug"], {}), ([], {"PREFORK_DEBUG": "1"}),
                      (["--config", "debug.toml"], {})):
        code, _, err = prefork("check", *args, "nosuchmodule:Handler", cwd=appdir, env=env)
        assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith(
            "prefork: error: "), (args, env)
    with Running(sockdir, cli=["--log-level", "warning", "app:Handler"],
                 pythonpath=[str(appdir)]) as m:
        m.request()
        assert "INFO" not in m.log()


def test_umask_applies_to_files_the_master_makes(appdir, sockdir):
    logfile = os.path.join(sockdir, "u.log")
    with Running(sockdir, cli=["--umask", "077", "--error-log", logfile, "app:Handler"],
                 pythonpath=[str(appdir)]):
        pass
    import stat
    assert stat.S_IMODE(os.stat(logfile).st_mode) == 0o600
    os.unlink(logfile)


def test_under_systemd_log_lines_carry_no_time_and_stop_fast_interrupts(appdir, sockdir):
    ctl = os.path.join(sockdir, "ctl.sock")
    # Running sets NOTIFY_SOCKET, as systemd does: journald stamps the lines itself.
    with Running(sockdir, cli=["--control", ctl, "app:Handler"], pythonpath=[str(appdir)]) as m:
        with m.hang():
            assert prefork("stop", "--fast", "--control", ctl, cwd=appdir,
                           others_running=True)[0] == 0
            assert m.wait_exit() == 0  # not held up by the request in flight
        lines = [line for line in m.log().splitlines() if line.strip()]
        assert lines and all(re.match(r"(INFO|WARNING|ERROR|DEBUG) \[\d+\] ", line)
                             for line in lines), lines
        assert "control socket: fast stop" in m.log()


def test_the_pidfile_lock_dies_with_the_master_not_with_its_workers(appdir, sockdir):
    pidfile = os.path.join(sockdir, "k.pid")
    first = Running(sockdir, cli=["--pidfile", pidfile, "--timeout", "0", "app:Handler"],
                    pythonpath=[str(appdir)])
    try:
        with first.hang():
            first.signal(signal.SIGKILL)
            first.wait_exit()
        # The hung worker lives on, but holds no lock: a new master takes the pidfile.
        other = os.path.join(sockdir, "b")  # the second master's notify socket
        os.mkdir(other)
        with Running(other, cli=["--pidfile", pidfile, "app:Handler"],
                     pythonpath=[str(appdir)]) as second:
            assert int(open(pidfile).read()) == second.pid
        os.rmdir(other)
    finally:
        for pid in first.known_workers:  # the orphan still spinning in its hung request
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        first.close()


NO_RUNTIME_DIRS = {"XDG_RUNTIME_DIR": "", "RUNTIME_DIRECTORY": ""}


def test_the_control_socket_is_found_without_flags(appdir, sockdir):
    """A master makes its control socket in the working directory (no runtime directory
    here); a second shell there finds it, and says which masters it sees when there are
    several."""
    def status(*flags):
        return prefork("status", *flags, cwd=sockdir, env=NO_RUNTIME_DIRS,
                       others_running=True)

    with Running(sockdir, cli=["app:Handler"], pythonpath=[str(appdir)],
                 env=NO_RUNTIME_DIRS) as first:
        assert os.listdir(sockdir).count("prefork.ctl") == 1
        code, out, _ = status()
        assert code == 0 and out.startswith(f"master {first.pid}:")
        with Running(sockdir, cli=["--name", "blog", "app:Handler"], tag="b",
                     pythonpath=[str(appdir)], env=NO_RUNTIME_DIRS) as blog, \
                Running(sockdir, cli=["app:Handler"], tag="c", pythonpath=[str(appdir)],
                        env=NO_RUNTIME_DIRS) as third:
            # The third found the default name taken, and took one with its pid.
            assert {"prefork-blog.ctl", f"prefork.{third.pid}.ctl"} <= set(os.listdir(sockdir))
            code, _, err = status()
            assert code == 2
            seen = one_error_line(err)
            assert seen.startswith("3 masters answer here: ") and "say which with --name" in seen
            for m, shown in ((first, ""), (blog, " [blog]"), (third, "")):
                assert f"(master {m.pid}{shown})" in seen
            code, out, _ = status("--name", "blog")
            assert code == 0 and out.startswith(f"master {blog.pid} [blog]:")
            assert prefork("stop", "--name", "blog", cwd=sockdir, env=NO_RUNTIME_DIRS,
                           others_running=True)[0] == 0
            assert blog.wait_exit() == 0
        assert prefork("stop", cwd=sockdir, env=NO_RUNTIME_DIRS, others_running=True)[0] == 0
        assert first.wait_exit() == 0
    assert not [f for f in os.listdir(sockdir) if f.endswith(".ctl")]


def test_the_control_socket_goes_to_the_runtime_directory(appdir, sockdir, tmp_path):
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime), "RUNTIME_DIRECTORY": ""}
    with Running(sockdir, cli=["--name", "shop", "app:Handler"], pythonpath=[str(appdir)],
                 env=env) as m:
        assert os.listdir(runtime) == ["prefork-shop.ctl"]
        code, out, _ = prefork("status", cwd=appdir, env=env, others_running=True)  # elsewhere
        assert code == 0 and out.startswith(f"master {m.pid} [shop]:")
    assert os.listdir(runtime) == []


def test_a_daemon_is_found_without_flags_through_an_upgrade(appdir, tmp_path):
    env = dict(NO_RUNTIME_DIRS, PREFORK_BIND="127.0.0.1:0")
    log = tmp_path / "d.log"

    def run(*args):
        return prefork(*args, cwd=appdir, env=env, others_running=True)

    code, _, err = run("serve", "--daemon", "--workers", "1", "--error-log", str(log),
                       "app:Handler")
    assert (code, err) == (0, "")
    control = appdir / "prefork.ctl"
    wait_for(lambda: "ready:" in log.read_text(), "the daemon's pool ready")
    code, out, _ = run("status", "--json")
    master = psutil.Process(json.loads(out)["master"]["pid"])
    try:
        code, out, _ = run("upgrade")  # the new master answers at the same path
        new = psutil.Process(int(out.split()[2]))
        assert code == 0 and out == f"upgraded: master {new.pid} took over from master " \
            f"{master.pid}\n"
        wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE,
                 "the old daemon to leave")
        master = new
        assert json.loads(run("status", "--json")[1])["master"]["pid"] == new.pid
        assert run("stop")[0] == 0
        wait_for(lambda: not master.is_running() or master.status() == psutil.STATUS_ZOMBIE,
                 "the daemon to stop")
    finally:
        if master.is_running():
            master.kill()
    assert not control.exists()
    assert "control socket: graceful stop" in log.read_text()


def test_a_reader_that_leaves_early_gets_no_traceback(appdir, sockdir):
    ctl = os.path.join(sockdir, "ctl")
    with Running(sockdir, cli=["--control", ctl, "app:Handler"], pythonpath=[str(appdir)]):
        # top's second screen comes a second after head has left with the first line.
        shell = subprocess.run(
            f"{shlex.quote(sys.executable)} -m prefork top -n 2 --control {shlex.quote(ctl)}"
            " | head -1; echo status ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
            capture_output=True, text=True, timeout=TIMEOUT, env=dict(os.environ,
                                                                    PYTHONPATH=ROOT))
    assert shell.stdout.startswith("master ") and shell.stdout.endswith("\nstatus 0\n")
    assert shell.stderr == ""
