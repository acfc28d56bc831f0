"""recorder_node: one rosbag2 MCAP bag per episode with the graph's topics, and a line in index.jsonl beside
the bags (`data.bags`). Messages are recorded as they arrive on the wire (raw CDR, stamped with this
node's clock: the simulator's with use_sim_time), so recording costs no deserialisation.

bac/record/start  std_srvs/Trigger: open a bag (its folder name comes back in the message)
bac/record/stop   std_srvs/SetBool: close it; `data` = whether the episode succeeded (a person says so on a
                  real arm; `bac demo` passes the simulator's verdict)
The index line: label (the `label` parameter, else the source: teleop, or the policy's schedule), source,
schedule, seed and cube (from sim_node when there is one), success, duration, interventions (take-overs
during the bag), bag, when."""
from __future__ import annotations

import datetime as _dt
import importlib
import json
import re
import sys
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from ..data.bags import LATCHED, RECORDED, BagWriter, append_index
from .runtime import Reporter, declare, guarded, now_s, run_node


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        self.out = Path(declare(self, "out_dir", "runs/episodes", "folder of the bags and their index.jsonl"))
        declare(self, "label", "", "who or what drives the recorded episodes (an operator's name, a method; read "
                "at each bac/record/start); empty: the source (teleop) or the policy's schedule")
        topics = declare(self, "topics", tuple(RECORDED), "topics recorded (message types as data.bags.RECORDED)")
        unknown = [t for t in topics if t not in RECORDED]
        if unknown:
            raise ValueError(f"parameter topics: no known message type for {unknown} (known: {sorted(RECORDED)})")
        self.reporter = Reporter(self)
        self.bag: BagWriter | None = None
        self.meta: dict = {}
        self._latest: dict[str, tuple[int, bytes]] = {}  # latched topics: their last message, for each bag's start
        self.source, self.interventions, self.episode = None, 0, {}
        self._schedule: tuple[str, float] | None = None  # policy_node's schedule and when it said so (wall s)
        for topic in topics:
            latched = topic in LATCHED
            qos = QoSProfile(depth=1 if latched else 50,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            sub = self.create_subscription(message_class(RECORDED[topic]), topic,
                                           lambda raw, t=topic: self.on_message(t, raw), qos, raw=True)
            self.get_logger().debug(f"recording {sub.topic_name}")
        self._names = {t: self.resolve_topic_name(t) for t in topics}  # absolute names in the bag
        # what the index says, from the messages it understands
        self.create_subscription(String, "bac/source", self.on_source,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.create_subscription(String, "bac/episode", self.on_episode, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.create_service(Trigger, "bac/record/start", self.on_start)
        self.create_service(SetBool, "bac/record/stop", self.on_stop)
        self.get_logger().info(f"recording episodes to {self.out} on bac/record/start")

    # ---- recording ---------------------------------------------------------------------------------------
    def on_message(self, topic: str, raw: bytes) -> None:
        t_ns = self.get_clock().now().nanoseconds
        if topic in LATCHED:
            self._latest[topic] = (t_ns, raw)
        if self.bag is not None:
            try:
                self.bag.write(self._names[topic], RECORDED[topic], t_ns, raw)
            except Exception as e:  # noqa: BLE001 - a full disk, a closed bag: counted, the node goes on
                self.reporter.count("write_failed", f"writing {topic} failed: {e!r}", "error")

    @guarded()
    def on_source(self, msg: String) -> None:
        d = json.loads(msg.data)
        self.source, self.interventions = d["source"], int(d.get("interventions", 0))

    @guarded()
    def on_episode(self, msg: String) -> None:
        self.episode = json.loads(msg.data)

    @guarded()
    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name == "bac: policy_node":
                self._schedule = ({kv.key: kv.value for kv in s.values}.get("method"), time.monotonic())

    # ---- services ----------------------------------------------------------------------------------------
    def on_start(self, _req, resp):
        if self.bag is not None:
            resp.success, resp.message = False, f"recording {self.bag.path.name} already: stop it first"
            return resp
        # the policy's schedule, if a policy_node reported in the last few seconds (it reports every second)
        fresh = self._schedule is not None and time.monotonic() - self._schedule[1] < 5.0
        schedule = self._schedule[0] if fresh and self.source == "policy" else None
        label = self.get_parameter("label").value or ("teleop" if self.source == "teleop" else (schedule or "policy"))
        stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
        name = re.sub(r"[^A-Za-z0-9_.-]", "", f"{stamp}_{label}_{self.episode.get('episode', 0)}")
        try:
            self.bag = BagWriter(self.out / name)
        except Exception as e:  # noqa: BLE001 - the folder exists, no permission, ...
            resp.success, resp.message = False, f"cannot open a bag at {self.out / name}: {e}"
            return resp
        now_ns = self.get_clock().now().nanoseconds
        for topic, (_, raw) in self._latest.items():  # every bag starts with the latched state
            self.bag.write(self._names[topic], RECORDED[topic], now_ns, raw)
        self.meta = {"bag": name, "label": label, "source": self.source, "schedule": schedule,
                     "started": _dt.datetime.now().isoformat(timespec="seconds"), "t_start": now_s(self),
                     "interventions_at_start": self.interventions}
        resp.success, resp.message = True, name
        return resp

    def on_stop(self, req, resp):
        if self.bag is None:
            resp.success, resp.message = False, "not recording"
            return resp
        bag, self.bag = self.bag, None
        bag.close()
        m = self.meta
        ep = self.episode if self.episode.get("episode") is not None else {}
        row = {"bag": m["bag"], "label": m["label"], "source": m["source"], "schedule": m["schedule"],
               "seed": ep.get("seed"), "cube": ep.get("cube_start"), "success": bool(req.data),
               "duration_s": round(now_s(self) - m["t_start"], 3),
               "interventions": self.interventions - m["interventions_at_start"], "messages": bag.count,
               "started": m["started"]}
        append_index(self.out, row)
        resp.success, resp.message = True, json.dumps(row)
        return resp

    def shutdown(self) -> None:
        if self.bag is not None:  # an episode cut short: its bag closed, not indexed
            self.bag.close()


def main(args=None) -> int:
    return run_node(RecorderNode, "recorder_node", args=args, startup_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
