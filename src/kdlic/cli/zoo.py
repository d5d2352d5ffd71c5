"""``kdlic zoo``: the models shipped with kdlic."""

from __future__ import annotations

import argparse

from kdlic.zoo import BUDGET_BYTES, zoo_bytes, zoo_info, zoo_names


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "zoo", help="list or describe the shipped models",
        description="Models trained by the kdlic project, shipped with the package. Any "
        "command that takes a checkpoint also takes a zoo name.")
    sub = p.add_subparsers(dest="zoo_command", metavar="{list,show,export}", required=True)
    sub.add_parser("list", help="every zoo model with its Kodak bpp and PSNR")
    show = sub.add_parser("show", help="everything known about one zoo model")
    show.add_argument("name")
    export = sub.add_parser(
        "export", help="(maintainers) add a checkpoint to the zoo as fp16, with Kodak figures",
        description="Evaluate CHECKPOINT in fp32 and fp16 on --images (real bitstreams), "
        "refuse if fp16 changes PSNR by more than 0.05 dB or bpp by more than 1%, then "
        "write src/kdlic/zoo/weights/NAME.pt with the figures in its metadata.")
    export.add_argument("checkpoint")
    export.add_argument("name")
    export.add_argument("--images", default="../shared/data/kodak")
    export.add_argument("--teacher", help="record this (zoo) name as the student's teacher")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.zoo_command == "export":
        from kdlic.data.images import find_images
        from kdlic.zoo.export import export_to_zoo

        kodak = export_to_zoo(args.checkpoint, args.name, find_images(args.images, "test"),
                              teacher=args.teacher)
        print(f"{args.name}: Kodak bpp {kodak['bpp']:.4f}, PSNR {kodak['psnr-rgb']:.2f} dB "
              f"(fp32: {kodak['fp32_bpp']:.4f}, {kodak['fp32_psnr-rgb']:.2f} dB)")
        return 0
    if args.zoo_command == "show":
        info = zoo_info(args.name)
        width = max(map(len, info))
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in value.items())
            print(f"{key:{width}s} {'-' if value is None else value}")
        return 0
    names = zoo_names()
    if not names:
        print("the zoo is empty")
        return 0
    print(f"{'name':24s} {'N':>4s} {'M':>4s} {'lambda':>7s} {'steps':>7s} {'params':>8s} "
          f"{'Kodak bpp':>9s} {'PSNR dB':>8s}")
    for name in names:
        i = zoo_info(name)
        k = i["kodak"]
        print(f"{name:24s} {i['N']:4d} {i['M']:4d} {i['lmbda']:7.4f} {i['steps'] or 0:7d} "
              f"{i['params'] / 1e6:7.2f}M {k.get('bpp', float('nan')):9.4f} "
              f"{k.get('psnr-rgb', float('nan')):8.2f}")
    print(f"{len(names)} models, {zoo_bytes() / 1e6:.1f} MB of weights in the package "
          f"(budget {BUDGET_BYTES / 1e6:.0f} MB: PyPI's wheels take 100 MB)")
    return 0
