"""Camera frames as the policy takes them: raw image buffers (a sensor_msgs/Image's fields) to RGB arrays."""
from __future__ import annotations

import numpy as np

MAX_IMAGE_SIDE = 4096  # px: a camera frame larger than this is not one we can use


def decode_rgb(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """rgb8 / bgr8 / rgba8 / bgra8 -> (H, W, 3) uint8 RGB. ValueError for anything else (other encodings,
    sides outside 8..MAX_IMAGE_SIDE px, data shorter than its header says)."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding)
    if channels is None:
        raise ValueError(f"unsupported image encoding '{encoding}' (rgb8, bgr8, rgba8, bgra8)")
    if not (8 <= width <= MAX_IMAGE_SIDE and 8 <= height <= MAX_IMAGE_SIDE):
        raise ValueError(f"image size {width}x{height} outside 8..{MAX_IMAGE_SIDE} px")
    if step < width * channels or len(data) < step * height:
        raise ValueError(f"image data too short for {width}x{height} {encoding}")
    rows = np.frombuffer(bytes(data), np.uint8).reshape(height, step)
    arr = rows[:, : width * channels].reshape(height, width, channels)[:, :, :3]
    return np.ascontiguousarray(arr[:, :, ::-1] if encoding.startswith("bgr") else arr)


def check_roi(roi, what: str = "image_roi"):
    """`roi` as given (None: the whole frame) when it is 4 values >= 0 (x, y, width, height); ValueError naming
    `what` otherwise. Whether it fits the frame is known only with the frame (`to_policy_size`)."""
    if roi is not None and (len(roi) != 4 or min(roi) < 0):
        raise ValueError(f"{what} must be 4 values >= 0 (x, y, width, height), got {list(roi)}")
    return roi


def to_policy_size(rgb: np.ndarray, size: int, roi=None) -> np.ndarray:
    """A frame cropped to `roi` (x, y, width, height in its pixels; None or a zero width: the whole frame) and
    resized to the policy's `size` x `size` (area averaging, as a camera's frame shrinks best); unchanged when it
    has that size already. The same for policy_node and `bac dataset`: a square crop keeps the scene's proportions
    that a 640x480 frame squashed to a square loses. ValueError for a crop outside the frame."""
    if roi is not None and roi[2] > 0:
        x, y, w, h = (int(v) for v in roi)
        if x < 0 or y < 0 or h <= 0 or x + w > rgb.shape[1] or y + h > rgb.shape[0]:
            raise ValueError(f"image_roi {list(roi)} is outside the {rgb.shape[1]}x{rgb.shape[0]} frame")
        rgb = rgb[y:y + h, x:x + w]
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    import cv2

    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


IMAGE_FORMATS = ("jpeg", "png", "raw")  # how a recorder stores camera frames


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> tuple[str, bytes]:
    """(H, W, 3) uint8 RGB -> (sensor_msgs/CompressedImage format, data), as ROS's compressed_image_transport
    writes them ('rgb8; jpeg compressed bgr8'). `quality`: JPEG quality 1..100 (png is lossless)."""
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed image format must be jpeg or png, got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"{fmt} encoding failed for an image of shape {rgb.shape}")
    return f"rgb8; {fmt} compressed bgr8", buf.tobytes()


def decode_compressed(fmt: str, data) -> np.ndarray:
    """A sensor_msgs/CompressedImage's format and data -> (H, W, 3) uint8 RGB. ValueError when it is not a
    colour jpeg/png image."""
    import cv2

    if "jpeg" not in fmt and "png" not in fmt and fmt not in ("jpg", "png", "jpeg"):
        raise ValueError(f"unsupported compressed image format '{fmt}' (jpeg or png)")
    bgr = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"compressed image ({fmt}, {len(data)} bytes) could not be decoded")
    return np.ascontiguousarray(bgr[:, :, ::-1])
