from interfaces.framing import FS, VT, FrameDecoder, frame


def test_one_frame_split_across_every_byte():
    d = FrameDecoder()
    out = []
    for b in frame(b"MSH|^~\\&|A"):
        out += d.feed(bytes([b]))
    assert out == [b"MSH|^~\\&|A"]
    assert not d.partial


def test_several_frames_in_one_read_with_garbage_between():
    d = FrameDecoder()
    data = b"noise" + frame(b"one") + b"\r\n\x00junk" + frame(b"two") + frame(b"three")[:4]
    assert d.feed(data) == [b"one", b"two"]
    assert d.partial
    assert d.discarded_bytes == len(b"noise") + len(b"\r\n\x00junk")
    assert d.feed(b"ee" + FS + b"\r") == [b"three"]


def test_vt_inside_a_frame_restarts_it():
    d = FrameDecoder()
    assert d.feed(VT + b"cut off" + VT + b"whole" + FS + b"\r") == [b"whole"]
    assert d.discarded_bytes == len(b"cut off")


def test_oversized_frame_is_dropped_and_the_next_one_survives():
    d = FrameDecoder(max_size=10)
    assert d.feed(frame(b"x" * 11) + frame(b"ok")) == [b"ok"]
    assert d.oversized_frames == 1
