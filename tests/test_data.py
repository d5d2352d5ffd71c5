import numpy as np
import pytest
from PIL import Image

from kdlic.data import CropSource, StepBatches, find_images
from kdlic.data.sampling import split_train_val, validation_crops
from kdlic.errors import KdlicError


def test_find_images_recurses_and_sorts(image_dir):
    files = find_images(image_dir)
    assert len(files) == 9 and files == sorted(files)


def test_missing_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(KdlicError, match="not found"):
        find_images(tmp_path / "nope")
    with pytest.raises(KdlicError, match="no readable images"):
        find_images(tmp_path)


def test_unreadable_images_are_skipped_with_a_count(image_dir, tmp_path, caplog):
    (tmp_path / "a.png").write_bytes((image_dir / "tiny.png").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    assert [p.name for p in find_images(tmp_path)] == ["a.png"]
    assert "skipped 1 unreadable image(s) of 2" in caplog.text


def test_vimeo_list_files_select_the_split(image_dir, tmp_path):
    png = (image_dir / "tiny.png").read_bytes()
    for seq in ("00001/0001", "00001/0002"):
        d = tmp_path / "sequences" / seq
        d.mkdir(parents=True)
        for i in range(1, 4):
            (d / f"im{i}.png").write_bytes(png)
    (tmp_path / "tri_trainlist.txt").write_text("00001/0001\n")
    (tmp_path / "tri_testlist.txt").write_text("00001/0002\n")
    train = find_images(tmp_path, "train")
    assert len(train) == 3 and all("0001" in p.parent.name for p in train)
    assert len(find_images(tmp_path, "test")) == 3


def test_small_images_are_upscaled_not_crashed_on(image_dir):
    source = CropSource([image_dir / "tiny.png"], crop=64)
    crop = source.random_crop(np.random.default_rng(0))["x"]
    assert crop.shape == (3, 64, 64) and crop.min() >= 0 and crop.max() <= 1


def test_batches_depend_only_on_seed_and_step(image_dir):
    source = CropSource(find_images(image_dir), crop=64)
    a, b = StepBatches(source, 4, seed=1), StepBatches(source, 4, seed=1)
    assert a[5]["x"].equal(b[5]["x"]) and not a[5]["x"].equal(a[6]["x"])
    # Two ranks' shares are the slices of the single-process batch.
    r0, r1 = StepBatches(source, 4, 1, 0, 2)[5]["x"], StepBatches(source, 4, 1, 1, 2)[5]["x"]
    assert r0.equal(a[5]["x"][0::2]) and r1.equal(a[5]["x"][1::2])


def test_validation_split_and_crops_are_deterministic(image_dir):
    files = find_images(image_dir)
    train, val = split_train_val(files, 2)
    assert len(val) == 2 and not set(train) & set(val)
    assert split_train_val(list(reversed(files)), 2) == (train, val)
    crops = validation_crops(CropSource(val, 64))
    assert crops.equal(validation_crops(CropSource(val, 64)))
    with pytest.raises(KdlicError, match="multiple of 64"):
        CropSource(val, 100)


def test_downscaled_crops_show_more_of_the_image(tmp_path):
    ramp = np.tile(np.arange(256, dtype=np.uint8), (256, 1))  # value = column
    Image.fromarray(np.stack([ramp] * 3, axis=2)).save(tmp_path / "ramp.png")
    plain = CropSource([tmp_path / "ramp.png"], crop=64)
    wide = CropSource([tmp_path / "ramp.png"], crop=64, downscale=0.25)
    spans = []
    for seed in range(8):
        a = plain.random_crop(np.random.default_rng(seed))["x"]
        b = wide.random_crop(np.random.default_rng(seed))["x"]
        assert a.shape == b.shape == (3, 64, 64)
        assert float(a.max() - a.min()) * 255 == pytest.approx(63, abs=1)
        spans.append(float(b.max() - b.min()) * 255)  # a region 64-256 px wide, resized
    assert min(spans) >= 62 and max(spans) > 150
