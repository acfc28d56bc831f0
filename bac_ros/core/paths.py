"""Where the package's files lie: a source checkout's, or an installed package's share folder."""
from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def package_data_dir(name: str) -> Path:
    """`<name>/` (config, schedules) of a source checkout, else the copy installed with the package
    (colcon/ament share): the source tree and an installed package find their files the same way."""
    local = PACKAGE_ROOT / name
    if local.is_dir():
        return local
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("bac_ros")) / name
    except Exception:  # noqa: BLE001 - no ament index: only the source checkout can hold it
        return local


CONFIG_DIR = package_data_dir("config")
