"""The lab's RealSense colour stream, opened the one way camera_node and `bac preflight` both use: a device by
serial (or the only one attached) or a recording, colour rgb8, capture times on the host clock, exposure and
white balance as asked. pyrealsense2 is imported only here, when a camera is opened."""
from __future__ import annotations


class CameraError(RuntimeError):
    """No usable camera; the message says what is missing or wrong and what to check."""


def open_camera(width: int, height: int, fps: int, serial: str = "", exposure: float = 0.0,
                white_balance: float = 0.0, playback_file: str = "", warn=print):
    """A RealSense colour stream (rgb8) with capture times on the host clock, from the device `serial` (empty: the
    only one attached) or a recording; CameraError saying what is missing or wrong and what to check."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise CameraError(f"pyrealsense2 is not importable ({e}); install it (pip install pyrealsense2; Debian needs "
                          "libusb-1.0-0)") from None
    pipeline, config = rs.pipeline(), rs.config()
    if playback_file:
        from pathlib import Path

        if not Path(playback_file).is_file():
            raise CameraError(f"playback_file {playback_file}: no such file")
        config.enable_device_from_file(playback_file, repeat_playback=False)
        where = f"the recording {playback_file}"
    else:
        attached = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
        if not attached:
            raise CameraError("no RealSense camera is attached (lsusb; a USB 3 port; librealsense's udev rules)")
        if serial and serial not in attached:
            raise CameraError(f"no RealSense with serial {serial}: attached {', '.join(attached)}")
        if not serial and len(attached) > 1:
            raise CameraError(f"{len(attached)} RealSense cameras attached ({', '.join(attached)}): set `serial`")
        config.enable_device(serial or attached[0])
        where = f"RealSense {serial or attached[0]}"
    config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
    try:
        profile = pipeline.start(config)
    except RuntimeError as e:
        raise CameraError(f"{where} would not stream colour {width}x{height} rgb8 at {fps} fps: {e} (a mode it has: "
                          "rs-enumerate-devices; busy: another process holds it; permission: udev rules)") from None
    sensor = next((s for s in profile.get_device().query_sensors()
                   if any(sp.stream_type() == rs.stream.color for sp in s.get_stream_profiles())), None)
    if sensor is None:  # (a recording's device names no colour sensor)
        warn("the colour sensor was not found: exposure, white balance and global time left as they are")
        return pipeline, profile
    settings = ((rs.option.global_time_enabled, 1.0, None),  # capture times on the host clock
                (rs.option.enable_auto_exposure, 0.0 if exposure else 1.0, None),
                (rs.option.exposure, exposure or None, "exposure"),
                (rs.option.enable_auto_white_balance, 0.0 if white_balance else 1.0, None),
                (rs.option.white_balance, white_balance or None, "white_balance"))
    for option, value, asked in settings:
        if value is None:
            continue
        if not sensor.supports(option):
            if asked and not playback_file:
                pipeline.stop()
                raise CameraError(f"{where} has no manual {asked}: set it to 0 (auto)")
            continue
        try:
            sensor.set_option(option, value)
        except RuntimeError as e:
            if asked:
                pipeline.stop()
                raise CameraError(f"{where}: {asked} {value:g} refused ({e}; its range: rs-enumerate-devices -o)") \
                    from None
            warn(f"camera option {option} not set: {e}")
    return pipeline, profile


def describe(profile) -> str:
    import pyrealsense2 as rs

    dev = profile.get_device()
    name = dev.get_info(rs.camera_info.name) if dev.supports(rs.camera_info.name) else "camera"
    serial = dev.get_info(rs.camera_info.serial_number) if dev.supports(rs.camera_info.serial_number) else "?"
    video = profile.get_stream(rs.stream.color).as_video_stream_profile()
    return f"{name} #{serial}, {video.width()}x{video.height()} at {video.fps()} fps"
