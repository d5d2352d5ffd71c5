"""The end-to-end demo: distil a student from the zoo teacher, compress, compare, report.

Runs offline on 2 CPU cores in a few minutes:

1. takes the zoo teacher (lambda 0.025);
2. distils an N=16 student from it with the paper's L1 loss for a short budget, with the
   teacher's outputs cached, on photos that ship with an installed package
   (scikit-image's sample photos) or, failing that, ``../shared/data/train``;
3. compresses a sample image (Kodak's kodim14 when ``../shared/data`` is there, else a
   scikit-image photo) with the zoo models and the new student, and with JPEG, WebP and
   JPEG XL
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
from kdlic.models import display_name
from kdlic.utils.files import from_jsonable, write_json
from kdlic.zoo import zoo_info, zoo_names, zoo_teacher

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


def zoo_family(teacher: str, n: int = 16) -> list[str]:
    """The zoo's N=``n`` students of the scale hyperprior, KD (L1) and their no-KD twins,
    at every lambda the zoo has: two curves of the same recipe as the demo's student."""
    chosen = []
    for name in zoo_names():
        info = zoo_info(name)
        if name != teacher and info["kind"] == "distill" and info["N"] == n and \
                info["preset"] in ("L1", "none"):
            chosen.append(name)
    return sorted(chosen, key=lambda name: (zoo_info(name)["preset"], zoo_info(name)["lmbda"]))


def story(student: dict, teacher: dict, codecs: dict[str, tuple[float, float]]) -> str:
    """One sentence: how the new student compares with its teacher and classic codecs."""
    size = teacher["params"] / student["params"]
    dec_s, dec_t = student.get("decode_ms"), teacher.get("decode_ms")
    speed = (f", decodes the {student['frame']} image in {dec_s:.0f} ms against the "
             f"teacher's {dec_t:.0f} ms" if dec_s and dec_t else "")
    classic = "; ".join(f"{name} at {b:.3f} bpp gives {q:.2f} dB" for name, (b, q)
                        in codecs.items())
    return (f"The N=16 student distilled just now has {size:.0f}x fewer parameters than its "
            f"teacher ({student['params'] / 1e6:.2f}M against {teacher['params'] / 1e6:.2f}M)"
            f"{speed}; it codes the image at {student['bpp']:.3f} bpp and "
            f"{student['psnr']:.2f} dB, the teacher at {teacher['bpp']:.3f} bpp and "
            f"{teacher['psnr']:.2f} dB; {classic}.")


def run_demo(out: Path, minutes: float, threads: int | None) -> Path:
    """Run every demo step into ``out``; returns the report's index.html."""
    out.mkdir(parents=True, exist_ok=True)
    teacher = zoo_teacher()
    images = training_images(out)
    sample = sample_image()
    print(f"[demo] teacher {teacher}; distilling an N=16 student for {minutes:g} min on "
          f"{images}")
    student_dir = out / "student-n16"
    if student_dir.exists():
        shutil.rmtree(student_dir)  # a fresh demo each time
    overrides = [{"kd": {"cache": "memory"}, "data": {"crop": 128, "batch_size": 8,
                                                      "val_count": 1},
                  "optim": {"lr": 3e-4}, "schedule": {"val_every": 200},
                  "runtime": {"threads": threads}}]
    run = api.distill(teacher, 16, images, preset="L1", minutes=minutes, steps=1_000_000,
                      run_dir=student_dir, overrides=overrides)
    family = zoo_family(teacher)
    print(f"[demo] compressing {sample.name} with the teacher, the new student, the zoo's "
          f"N=16 students with and without KD ({len(family)}), JPEG, WebP and JPEG XL")
    # Two files: the new student (minutes of training) is not a point of the zoo's curves.
    zoo = api.evaluate([teacher, *family], sample, name="zoo")
    new = api.evaluate([str(run.best)], sample, name="N=16 student distilled just now")
    write_json(out / "zoo.json", zoo)
    write_json(out / "student.json", new)
    classic = {"jpeg": "JPEG", "webp": "WebP", "jxl": "JPEG XL"}
    codecs = api.baselines(sample, out / "baselines", codecs=tuple(classic))
    print("[demo] profiling the teacher and the N=16 students (size, FLOPs, time)")
    # the zoo's KD student at the teacher's lambda: the new student's trained twin
    lmbda = zoo_info(teacher)["lmbda"]
    twin = min((n for n in family if zoo_info(n)["preset"] == "L1"),
               key=lambda n: abs(zoo_info(n)["lmbda"] - lmbda), default=None)
    shown = [teacher, str(run.best), *([twin] if twin else [])]
    profile = api.profile(shown, output=out / "profile.json", image=sample, repeats=3,
                          warmup=1, threads=threads, matmul_n=0)
    by_model = {e["model"]: e for e in profile["models"]}

    def figures(doc: dict, i: int) -> dict:
        spec = doc["models"][i]["model"]
        entry = by_model.get(spec, {})
        frame = "x".join(map(str, entry.get("frame", [])[::-1]))
        return {"bpp": doc["results"]["bpp"][i],
                "psnr": float(from_jsonable(doc["results"]["psnr-rgb"][i])),
                "params": doc["models"][i]["params"], "frame": frame,
                "decode_ms": 1e3 * entry["decoder"]["latency_s"]["median"] if entry else None}

    student = figures(new, 0)
    closest = {classic[c]: _similar_bpp(doc, student["bpp"])
               for c, doc in codecs.items()}
    sentence = story(student, figures(zoo, 0), closest)
    print(f"\n{'model':40s} {'bpp':>7s} {'PSNR dB':>8s}")
    for doc in (zoo, new):
        for i, m in enumerate(doc["models"]):
            print(f"{display_name(m['model'])[:40]:40s} {doc['results']['bpp'][i]:7.3f} "
                  f"{float(from_jsonable(doc['results']['psnr-rgb'][i])):8.2f}")
    print("\n" + sentence)
    report = out / "report"
    api.report([out / "zoo.json", out / "student.json",
                *(out / "baselines" / f"{c}.json" for c in codecs), out / "profile.json"], report,
               crop_image=sample, reference=teacher, lead=[sentence])
    return report / "index.html"

