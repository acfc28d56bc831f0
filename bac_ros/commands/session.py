"""`bac session`: record teleoperated episodes from this terminal's keyboard, through recorder_node's services
(the same ones the teleop device's buttons call): Enter or space starts an episode, s ends it as a success,
f as a failure, d discards it (while recording: record that episode again; between episodes: the last one
saved), x stops the arm (the controller's bac/stop: nothing plays, it brakes and holds), q quits. It prints the
recorder's state (bac/record/state) as it changes."""
from __future__ import annotations

import sys

KEYS = {"\n": "start", "\r": "start", " ": "start", "s": "success", "f": "failure", "d": "discard", "x": "stop arm",
        "q": "quit"}
HELP = "keys: Enter/space start | s success | f failure | d discard | x stop the arm (bac/stop) | q quit"


def add_parser(sub) -> None:
    s = sub.add_parser("session", help="record episodes from this terminal's keyboard (recorder_node's services)")
    s.add_argument("--namespace", default="", help="the graph's namespace (as the launch file's namespace:=)")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a service's answer")
    s.set_defaults(func=run)


def run(args) -> int:
    import select
    import termios
    import tty

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String
    from std_srvs.srv import SetBool, Trigger

    from ..nodes.messages import record_state_text
    from ..nodes.runtime import ServiceUnavailable, call_service, spin_in_background

    rclpy.init()
    node = rclpy.create_node("bac_session", namespace=args.namespace or None)
    clients = {"start": node.create_client(Trigger, "bac/record/start"),
               "stop": node.create_client(SetBool, "bac/record/stop"),
               "discard": node.create_client(Trigger, "bac/record/discard"),
               "stop arm": node.create_client(Trigger, "bac/stop")}
    state = {"text": None}
    node.create_subscription(String, "bac/record/state", lambda m: state.update(text=m.data),
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    stop_spin = spin_in_background(node, "session-spin")

    def call(name: str, request) -> str:
        client = clients[name]
        try:
            r = call_service(client, request, args.timeout)
        except ServiceUnavailable:
            who = "controller_node" if name == "stop arm" else "recorder_node"
            return f"{client.srv_name}: no {who} answers (is the graph up, in this namespace?)"
        except TimeoutError as e:
            return str(e)
        return ("ok: " if r.success else "refused: ") + r.message

    def act(key: str) -> str | None:
        what = KEYS.get(key)
        if what == "start":
            return call("start", Trigger.Request())
        if what in ("success", "failure"):
            return call("stop", SetBool.Request(data=what == "success"))
        if what in ("discard", "stop arm"):
            return call(what, Trigger.Request())
        return None

    interactive = sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    print(HELP, flush=True)
    shown = None
    try:
        if interactive:
            tty.setcbreak(sys.stdin.fileno())
        while True:
            if state["text"] != shown:
                shown = state["text"]
                print(f"recorder: {record_state_text(shown)}", flush=True)
            ready, _, _ = select.select([sys.stdin], [], [], 0.2)
            if not ready:
                continue
            key = sys.stdin.read(1)
            if key in ("", "q"):  # end of input, or quit
                break
            answer = act(key.lower() if key not in ("\n", "\r", " ") else key)
            print(answer if answer is not None else HELP, flush=True)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        stop_spin()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
