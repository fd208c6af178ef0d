"""infra/local/dev.sh's port checks, without starting the stack: the emulator port is held by
a listener, so the script always stops at its port checks, and which port it names says how the
first check judged the port under test."""

import os
import pathlib
import socket
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def time_wait_port() -> int:
    """A port whose only trace is a connection in TIME_WAIT. The listener sets SO_REUSEADDR
    as tokio (cargo lambda watch) and werkzeug (moto) do, and closes first, as when make dev
    is stopped with Ctrl-C: the TIME_WAIT stays on its side for a minute."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # active close: TIME_WAIT on 127.0.0.1:port
    cli.recv(1)
    cli.close()
    srv.close()
    return port


def run_dev(port: int, held_moto_port: int, tmp_path) -> str:
    env = {
        **os.environ,
        "TOLLGATE_DEV_PORT": str(port),
        "TOLLGATE_MOTO_PORT": str(held_moto_port),
        "TOLLGATE_DEV_STATE": str(tmp_path),
    }
    r = subprocess.run(
        [str(ROOT / "infra/local/dev.sh")], env=env, capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode != 0
    return r.stderr


def test_port_in_time_wait_counts_as_free_so_make_dev_restarts_at_once(tmp_path):
    port = time_wait_port()
    plain = socket.socket()
    try:
        plain.bind(("127.0.0.1", port))
        refused = False
    except OSError:
        refused = True
    finally:
        plain.close()
    assert refused, "could not create a TIME_WAIT connection on this machine"
    with socket.socket() as moto:
        moto.bind(("127.0.0.1", 0))
        moto.listen()
        moto_port = moto.getsockname()[1]
        out = run_dev(port, moto_port, tmp_path)
    assert f"port {port} is in use" not in out, out
    assert f"port {moto_port} is in use" in out, out


def test_port_with_a_listener_is_reported_in_use(tmp_path):
    with socket.socket() as s, socket.socket() as moto:
        s.bind(("127.0.0.1", 0))
        s.listen()
        moto.bind(("127.0.0.1", 0))
        moto.listen()
        out = run_dev(s.getsockname()[1], moto.getsockname()[1], tmp_path)
        assert f"port {s.getsockname()[1]} is in use" in out, out
