"""docs/reference.md is generated from the code, and the graph's interface tables agree with the nodes."""
import pytest


def _render() -> str:
    from bac_ros.cli import build_parser
    from bac_ros.commands.reference import render, subcommands

    return render(subcommands(build_parser()))


def test_the_committed_reference_is_what_the_code_declares():
    from bac_ros.commands.reference import DEFAULT_OUT

    assert DEFAULT_OUT.read_text() == _render(), "docs/reference.md differs from the code: run `bac reference`"


def test_every_node_has_a_table_and_every_command_is_there():
    from bac_ros.cli import COMMANDS
    from bac_ros.commands.reference import NODES

    text = _render()
    for node in NODES:
        assert f"### {node}" in text
    for command in COMMANDS:
        assert f"### bac {command.__name__.rsplit('.', 1)[-1]}" in text


@pytest.mark.parametrize("node", ["controller_node", "recorder_node", "metrics_node", "teleop_node", "operator_node",
                                  "policy_node"])
def test_the_interface_table_is_what_the_node_creates(node):
    """The node built in this process (no robot, no camera: the ones that start without hardware); its
    publishers, subscriptions, services and clients against graph/interfaces.py."""
    pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")
    import importlib

    import rclpy

    from bac_ros.graph.interfaces import INTERFACES

    args = {"controller_node": ["-p", "robot_ip:=127.0.0.99", "-p", "connect_timeout_s:=600.0"],
            "policy_node": ["-p", "schedule:=bac_s7", "-p", "checkpoint:=shipped", "-p", "backend:=eager", "-p",
                            "drift_guard:='off'"]}
    rclpy.init(domain_id=220, args=["--ros-args", *args.get(node, [])])
    module = importlib.import_module(f"bac_ros.nodes.{node}")
    cls = next(v for k, v in vars(module).items() if k.endswith("Node") and isinstance(v, type) and k != "Node")
    n = cls()
    try:
        nodes = [n] + ([n._side] if node == "controller_node" else [])
        got = set()
        standard = ("/rosout", "/parameter_events")
        for x in nodes:
            name, ns = x.get_name(), x.get_namespace()
            got |= {("publishes", t) for t, _ in x.get_publisher_names_and_types_by_node(name, ns) if t not in standard}
            got |= {("subscribes", t) for t, _ in x.get_subscriber_names_and_types_by_node(name, ns)
                    if t not in standard}
            got |= {("serves", s) for s, _ in x.get_service_names_and_types_by_node(name, ns) if "/" + name not in s
                    and not s.startswith(f"{name}/")}
            got |= {("calls", s) for s, _ in x.get_client_names_and_types_by_node(name, ns)}
        table = {(e.kind, e.name if e.name.startswith("/") else "/" + e.name) for e in INTERFACES[node]
                 if e.name != "(topics)"}
        if node == "recorder_node":  # and the recorded topics, as its `topics` parameter says
            from bac_ros.data.bags import RECORDED
            table |= {("subscribes", "/" + t.lstrip("/")) for t in RECORDED}
        assert got == table, (sorted(got - table), sorted(table - got))
    finally:
        if hasattr(n, "shutdown"):
            n.shutdown()
        n.destroy_node()
        rclpy.try_shutdown()
