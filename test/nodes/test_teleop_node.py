"""teleop_node as a process: no device, a clear line and exit 2; a bad parameter likewise."""
import os
import subprocess
import sys

import pytest


def _run(*params):
    return subprocess.run([sys.executable, "-m", "bac_ros.nodes.teleop_node", "--ros-args",
                           *[a for p in params for a in ("-p", p)]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ROS_DOMAIN_ID": "214"})


def test_without_a_spacemouse_it_exits_2_with_one_line():
    r = _run("input:=spacemouse")
    if r.returncode == 0:
        pytest.skip("a SpaceMouse is attached")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("teleop_node: error:") and ("SpaceMouse" in last or "pyspacemouse" in last), last


def test_an_unknown_input_is_refused():
    r = _run("input:=mind_control")
    assert r.returncode == 2 and "input" in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr


def test_an_unplugged_device_reads_as_released_and_is_opened_again_when_it_is_back():
    """Issue 38: a read that raises (the cable pulled) gives no reading (the node then holds: zero twist) and the
    device is opened again every retry_s until it opens; the first open's error stays the caller's (exit 2)."""
    import time

    from bac_ros.nodes.teleop_node import DeviceError, Reconnecting

    class Device:
        def __init__(self):
            self.reads = 0

        def read(self):
            self.reads += 1
            if self.reads > 2:
                raise OSError("read error")  # hidapi's, once the cable is out
            return "reading"

        def close(self):
            pass

    plugged = [True, False, False, True]  # opens: at start, two tries while unplugged, then back

    def open_device():
        if not plugged.pop(0):
            raise DeviceError("no SpaceMouse attached")
        return Device()

    d = Reconnecting(open_device, retry_s=0.05)
    assert [d.read(), d.read(), d.read()] == ["reading", "reading", None] and d.losses == 1 and "read error" in d.lost
    assert d.read() is None and plugged == [False, False, True]  # within retry_s: no try
    time.sleep(0.06)
    assert d.read() is None and "no SpaceMouse" in d.lost and plugged == [False, True]
    time.sleep(0.06)
    assert d.read() is None and plugged == [True]
    time.sleep(0.06)
    assert d.read() == "reading" and d.reconnects == 1 and d.lost is None
    plugged.append(False)
    with pytest.raises(DeviceError):
        Reconnecting(open_device)  # the first open raises: the node exits 2 with it
