"""DICOM decoding and pre-processing for the imaging models (pydicom + numpy).

Handles the modality LUT (rescale slope/intercept), VOI windowing (the
file's window, else robust min/max), MONOCHROME1 inversion, RGB to luminance,
multi-frame, and the transfer syntaxes pydicom can decode with what is
installed (uncompressed, RLE, deflate); others are refused clearly.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError


class DicomError(Exception):
    """``status`` 400 for input that is not (complete) DICOM, 422 for DICOM we cannot use."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class DicomInstance:
    dataset: FileDataset
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    instance_number: int | None
    series_number: int | None
    body_part: str | None
    patient_id: str | None
    patient_name: str | None
    patient_sex: str | None
    patient_birth_date: str | None
    study_date: str | None
    study_time: str | None
    study_description: str | None
    series_description: str | None
    accession_number: str | None
    transfer_syntax: str
    frames: int
    extra: dict[str, Any] = field(default_factory=dict)


def _str(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    text = str(value).strip()
    return text or None


def _int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def read_dicom(data: bytes) -> DicomInstance:
    """Parse a DICOM Part 10 file; refuse non-DICOM, truncated and non-image objects."""
    if not data:
        raise DicomError(400, "empty body: expected a DICOM Part 10 file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError as exc:
        raise DicomError(400, f"not a DICOM Part 10 file: {exc}") from exc
    except (EOFError, ValueError, OSError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise DicomError(400, f"DICOM file is truncated or malformed: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError(422, "DICOM object has no pixel data (not an image)")
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not _str(ds, k)]
    if missing:
        raise DicomError(422, f"DICOM object lacks {', '.join(missing)}")
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return DicomInstance(
        dataset=ds, study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=_str(ds, "SOPClassUID") or (str(meta.get("MediaStorageSOPClassUID", "")) if meta else ""),
        modality=_str(ds, "Modality") or "OT", instance_number=_int(ds, "InstanceNumber"),
        series_number=_int(ds, "SeriesNumber"), body_part=_str(ds, "BodyPartExamined"),
        patient_id=_str(ds, "PatientID"), patient_name=_str(ds, "PatientName"), patient_sex=_str(ds, "PatientSex"),
        patient_birth_date=_str(ds, "PatientBirthDate"), study_date=_str(ds, "StudyDate"),
        study_time=_str(ds, "StudyTime"), study_description=_str(ds, "StudyDescription"),
        series_description=_str(ds, "SeriesDescription"), accession_number=_str(ds, "AccessionNumber"),
        transfer_syntax=ts.name if ts is not None else "unknown", frames=_int(ds, "NumberOfFrames") or 1,
    )


def _pixels(inst: DicomInstance) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = inst.dataset.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        raise DicomError(422, f"transfer syntax {inst.transfer_syntax} cannot be decoded here: "
                              f"{str(exc).splitlines()[0]}") from exc
    except (ValueError, EOFError, AttributeError, KeyError, TypeError) as exc:
        raise DicomError(400, f"pixel data unreadable (truncated or inconsistent): {exc}") from exc
    return np.asarray(arr)


def _to_frames(inst: DicomInstance, arr: np.ndarray) -> np.ndarray:
    """-> float64 [F, H, W] in modality units (rescale applied)."""
    ds = inst.dataset
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp == 3:  # RGB (pydicom converts YBR to RGB): ITU-R BT.601 luminance
        arr = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if inst.frames > 1 and arr.ndim == 2:
        arr = arr[None]
    if inst.frames == 1 and arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DicomError(422, f"unsupported pixel array shape {arr.shape}")
    frames = arr.astype(np.float64)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return frames * slope + intercept


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def window(frame: np.ndarray, center: float | None, width: float | None) -> np.ndarray:
    """VOI window to [0, 1] (DICOM linear function); robust percentiles when no window is given."""
    if center is None or width is None or width <= 1:
        lo, hi = np.percentile(frame, [0.5, 99.5])
        if hi <= lo:
            hi = lo + 1.0
        return np.clip((frame - lo) / (hi - lo), 0.0, 1.0)
    lo = center - 0.5 - (width - 1) / 2
    return np.clip((frame - lo) / (width - 1), 0.0, 1.0)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a 2-D array to size x size (numpy only, no extra dependency)."""
    h, w = img.shape
    ys = np.linspace(0, h - 1, size)
    xs = np.linspace(0, w - 1, size)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None]
    wx = (xs - x0)[None, :]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def preprocess(inst: DicomInstance, size: int = 64) -> np.ndarray:
    """All frames as model input: float32 [F, 1, size, size] in [0, 1], bright = dense."""
    frames = _to_frames(inst, _pixels(inst))
    ds = inst.dataset
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    out = np.empty((frames.shape[0], 1, size, size), np.float32)
    invert = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    for i, frame in enumerate(frames):
        img = window(frame, center, width)
        if invert:
            img = 1.0 - img
        out[i, 0] = resize(img, size)
    return out
