from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from inference.imaging.dicom import DicomError, preprocess, read_dicom, resize, window


def test_ct_small_uses_rescale_and_has_study_metadata(dicom_bytes):
    inst = read_dicom(dicom_bytes("CT_small.dcm"))
    assert inst.modality == "CT" and inst.frames == 1
    assert inst.study_uid and inst.series_uid and inst.sop_uid and inst.sop_class_uid.startswith("1.2.840")
    x = preprocess(inst)
    assert x.shape == (1, 1, 64, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05


def test_rescale_is_applied_before_a_hounsfield_window(dicom_bytes):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes("CT_small.dcm")))
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400  # soft-tissue window in HU
    buf = io.BytesIO()
    ds.save_as(buf)
    x = preprocess(read_dicom(buf.getvalue()))
    hu = ds.pixel_array.astype(float) * 2 - 1024
    np.testing.assert_allclose(x[0, 0], resize(window(hu, 40.0, 400.0), 64), rtol=1e-6)


def test_window_center_width_follow_the_dicom_linear_function():
    frame = np.array([[0.0, 300.0, 600.0, 900.0, 1200.0]])
    out = window(frame, center=600.0, width=601.0)
    # lower edge c - 0.5 - (w-1)/2 = 299.5; values <= it -> 0, >= c - 0.5 + (w-1)/2 = 899.5 -> 1
    np.testing.assert_allclose(out, [[0.0, 0.5 / 600, 300.5 / 600, 1.0, 1.0]])


def test_mr_small_uses_its_window(dicom_bytes):
    inst = read_dicom(dicom_bytes("MR_small.dcm"))
    assert float(inst.dataset.WindowCenter) == 600
    x = preprocess(inst)
    raw = inst.dataset.pixel_array.astype(float)
    expected = resize(window(raw, 600.0, float(inst.dataset.WindowWidth)), 64)
    np.testing.assert_allclose(x[0, 0], expected, rtol=1e-6)


def test_rle_compressed_gives_the_same_input_as_uncompressed(dicom_bytes):
    plain = preprocess(read_dicom(dicom_bytes("MR_small.dcm")))
    rle_inst = read_dicom(dicom_bytes("MR_small_RLE.dcm"))
    assert rle_inst.transfer_syntax == "RLE Lossless"
    np.testing.assert_array_equal(preprocess(rle_inst), plain)


def test_deflated_transfer_syntax(dicom_bytes):
    inst = read_dicom(dicom_bytes("image_dfl.dcm"))
    assert "Deflated" in inst.transfer_syntax
    assert preprocess(inst).shape == (1, 1, 64, 64)


def test_multiframe_gives_one_input_per_frame(dicom_bytes):
    inst = read_dicom(dicom_bytes("rtdose.dcm"))
    assert inst.frames == 15
    x = preprocess(inst)
    assert x.shape == (15, 1, 64, 64)
    assert not np.allclose(x[0], x[7])


def test_rgb_is_reduced_to_luminance(dicom_bytes):
    x = preprocess(read_dicom(dicom_bytes("ExplVR_BigEnd.dcm")))
    assert x.shape == (1, 1, 64, 64)


def test_monochrome1_is_inverted(dicom_bytes):
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes("CT_small.dcm")))
    mono2 = preprocess(read_dicom(dicom_bytes("CT_small.dcm")))
    ds.PhotometricInterpretation = "MONOCHROME1"
    buf = io.BytesIO()
    ds.save_as(buf)
    mono1 = preprocess(read_dicom(buf.getvalue()))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


@pytest.mark.parametrize("name, status, match", [
    ("MR_truncated.dcm", 400, "truncated"),
    ("README.txt", 400, "not a DICOM"),
    ("rtplan.dcm", 422, "no pixel data"),
    ("JPEG2000.dcm", 422, "cannot be decoded"),
    ("MR_small_jpeg_ls_lossless.dcm", 422, "JPEG-LS"),
])
def test_bad_dicom_gives_a_clear_status(dicom_bytes, name, status, match):
    with pytest.raises(DicomError, match=match) as err:
        preprocess(read_dicom(dicom_bytes(name)))
    assert err.value.status == status


def test_truncated_header_and_empty_body(dicom_bytes):
    data = dicom_bytes("CT_small.dcm")
    for blob in (b"", data[:200], data[:1000]):
        with pytest.raises(DicomError) as err:
            preprocess(read_dicom(blob))
        assert err.value.status in (400, 422)


def test_resize_preserves_corners_and_constant_images():
    img = np.arange(16, dtype=float).reshape(4, 4)
    out = resize(img, 7)
    assert out[0, 0] == 0 and out[-1, -1] == 15 and out[0, -1] == 3
    np.testing.assert_allclose(resize(np.full((10, 3), 2.5), 5), 2.5)
