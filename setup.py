from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "bac_ros"
# schedules/<model>/*.json, installed under share/bac_ros/schedules/<model>/
schedule_files = [(f"share/{package_name}/{d}", glob(f"{d}/*.json")) for d in sorted(glob("schedules/*"))
                  if Path(d).is_dir()]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml", "README.md"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        *schedule_files,
    ],
    install_requires=["setuptools"],
    package_data={"bac_ros": ["checkpoints/*/*.json", "checkpoints/*/*.safetensors"]},
    include_package_data=True,
    zip_safe=False,
    maintainer="bac_ros developers",
    maintainer_email="dev@bac-ros.invalid",
    description="DP-T grasp policy for a Franka FR3 with Block-wise Adaptive Caching (BAC).",
    license="Apache-2.0",
    tests_require=["pytest"],
    python_requires=">=3.11",
    entry_points={
        "console_scripts": [
            "bac = bac_ros.cli:main",
            "policy_node = bac_ros.nodes.policy_node:main",
            "controller_node = bac_ros.nodes.controller_node:main",
            "sim_node = bac_ros.nodes.sim_node:main",
            "camera_node = bac_ros.nodes.camera_node:main",
            "metrics_node = bac_ros.nodes.metrics_node:main",
            "teleop_node = bac_ros.nodes.teleop_node:main",
            "operator_node = bac_ros.nodes.operator_node:main",
            "recorder_node = bac_ros.nodes.recorder_node:main",
        ],
    },
)
