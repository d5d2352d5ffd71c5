"""The end-to-end demo: distil a student from the zoo teacher, compress, compare, report.

Runs offline on 2 CPU cores in a few minutes:

1. takes the zoo teacher (lambda 0.025);
2. distils an N=16 student from it with the paper's L1 loss for a short budget, with the
   teacher's outputs cached, on photos that ship with an installed package
   (scikit-image's sample photos) or, failing that, ``../shared/data/train``;
3. compresses a sample image (Kodak's kodim14 when ``../shared/data`` is there, else a
   scikit-image photo) with the zoo models and the new student, and with JPEG and WebP
   sweeps;
4. writes the HTML report and prints where it is.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

from kdlic import api
from kdlic.errors import KdlicError
from kdlic.utils.files import from_jsonable, write_json
from kdlic.zoo import zoo_names, zoo_teacher

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
# scikit-image's bundled colour photos (public domain / CC0, see skimage.data docs).
SKIMAGE_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg",
                  "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg",
                  "color.png")


def _skimage_data() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def training_images(out: Path) -> Path:
    """A folder of demo training photos (copied from an installed package), or shared data."""
    data = _skimage_data()
    if data is not None and all((data / name).is_file() for name in SKIMAGE_PHOTOS):
        folder = out / "train-images"
        folder.mkdir(parents=True, exist_ok=True)
        for name in SKIMAGE_PHOTOS:
            shutil.copyfile(data / name, folder / name)
        return folder
    if (SHARED / "train").is_dir():
        return SHARED / "train"
    raise KdlicError("no demo images: install scikit-image (make demo does) or provide "
                     "../shared/data/train")


def sample_image() -> Path:
    kodim14 = SHARED / "kodak" / "kodim14.png"
    if kodim14.is_file():
        return kodim14
    data = _skimage_data()
    if data is not None and (data / "astronaut.png").is_file():
        return data / "astronaut.png"
    raise KdlicError("no sample image: neither ../shared/data/kodak nor scikit-image found")


def _similar_bpp(curve: dict, bpp: float) -> tuple[float, float]:
    """The (bpp, PSNR) of the sweep point whose rate is closest to ``bpp``."""
    r = curve["results"]
    i = int(np.argmin([abs(b - bpp) for b in r["bpp"]]))
    return r["bpp"][i], float(from_jsonable(r["psnr-rgb"][i]))


def run_demo(out: Path, minutes: float, threads: int | None) -> Path:
    """Run every demo step into ``out``; returns the report's index.html."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    teacher = zoo_teacher()
    images = training_images(out)
    sample = sample_image()
    print(f"[demo] teacher {teacher}; distilling an N=16 student for {minutes:g} min on "
          f"{images}")
    student_dir = out / "student-n16"
    if student_dir.exists():
        shutil.rmtree(student_dir)  # a fresh demo each time
    overrides = ["kd.cache=memory", "data.crop=128", "data.batch_size=8", "optim.lr=3e-4",
                 "schedule.val_every=200", "data.val_count=1"]
    if threads:
        overrides.append(f"runtime.threads={threads}")
    run = api.distill(teacher, 16, images, preset="L1", minutes=minutes, steps=1_000_000,
                      run_dir=student_dir, overrides=overrides)
    models = [teacher, *[n for n in zoo_names() if n != teacher], str(run.best)]
    print(f"[demo] compressing {sample.name} with {len(models)} models and JPEG/WebP")
    write_json(out / "models.json", api.evaluate(models, sample, name="kdlic"))
    api.baselines(sample, out / "baselines", codecs=("jpeg", "webp"))
    evaluated = json.loads((out / "models.json").read_text())
    print(f"\n{'codec':40s} {'bpp':>7s} {'PSNR dB':>8s}")
    for i, m in enumerate(evaluated["models"]):
        bpp, psnr = evaluated["results"]["bpp"][i], evaluated["results"]["psnr-rgb"][i]
        last = i == len(evaluated["models"]) - 1
        label = "N=16 student distilled just now" if last else m["model"]
        print(f"{label[-40:]:40s} {bpp:7.3f} {psnr:8.2f}")
        if last:
            for codec in ("jpeg", "webp"):
                curve = json.loads((out / "baselines" / f"{codec}.json").read_text())
                b, q = _similar_bpp(curve, bpp)
                print(f"{codec + ' (closest bpp to the student)':40s} {b:7.3f} {q:8.2f}")
    report = out / "report"
    api.report([out / "models.json", out / "baselines" / "jpeg.json",
                out / "baselines" / "webp.json"], report, crop_image=sample)
    return report / "index.html"
