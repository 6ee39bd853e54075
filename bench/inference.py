"""Per-frame inference latency of the full-size architecture (random weights) on this machine.

    .venv/bin/python -m bench.inference [--repeats 10] [--out outputs/bench/inference.json]

Times our PyTorch graph at batch 1 and 8 next to the reference test-time structure
(bench/reference_structure.py) in the same run, checks that both give the same maps, and
reports the fraction of the sgemm roofline (about 43 GFLOP per frame).
"""

import argparse
from typing import List, Optional

from affordance_grounding.config import ModelConfig
from affordance_grounding.model.backbones import (
    build_clip_tokenizer, ClipDenseEncoder, DinoKeyEncoder, load_clip_model, load_dino_model)
from affordance_grounding.model.factory import build_prompt_tables
from affordance_grounding.model.grounding import AffordanceGrounder
from affordance_grounding.model.head import AffordanceHead
from bench.machine import describe_machine
from bench.reference_structure import reference_test_forward
from bench.timing import median_seconds, write_report
import torch

FLOP_PER_FRAME = 43.2e9  # METHOD.md 8.2: about 21.6 GMAC per 224x224 frame


def build_full_size(seed: int = 0):
    """Full-size SelectiveCL architecture with random weights, plus the full CLIP model."""
    torch.manual_seed(seed)
    config = ModelConfig(clip_weights=None, dino_weights=None)
    clip_model = load_clip_model(config)
    item_text = build_prompt_tables(clip_model, config)['item']
    dino = DinoKeyEncoder(load_dino_model(config))
    head = AffordanceHead(dino.width, len(config.labels)).eval()
    grounder = AffordanceGrounder(config, ClipDenseEncoder(clip_model.visual), dino, head,
                                  item_text).eval()
    return grounder, clip_model, build_clip_tokenizer(config)


def run(repeats: int) -> dict:
    """Measure every row; returns the JSON-ready result."""
    grounder, clip_model, tokenizer = build_full_size()
    label = grounder.labels.index('hold')
    rows = []
    for batch in (1, 8):
        image = torch.randn(batch, 3, 224, 224)
        index = torch.full((batch,), label)
        with torch.inference_mode():
            seconds = median_seconds(lambda: grounder(image, index),
                                     repeats if batch == 1 else 3, warmup=2)
        rows.append(('ours: torch eager fp32', batch, seconds / batch))
    image = torch.randn(1, 3, 224, 224)
    rows.append(('reference structure fp32', 1, median_seconds(
        lambda: reference_test_forward(grounder, clip_model, tokenizer, image, label),
        repeats, warmup=2)))
    with torch.inference_mode():
        ours = grounder(image, torch.tensor([label])).calibrated[0, 0]
    reference = reference_test_forward(grounder, clip_model, tokenizer, image, label)[1][0]
    parity = float((ours - reference).abs().max() / reference.abs().max())
    machine = describe_machine()
    roofline_s = FLOP_PER_FRAME / (machine['sgemm_gflops'] * 1e9)
    results = [{'backend': name, 'batch': batch, 'ms_per_frame': round(seconds * 1e3, 1),
                'roofline_fraction': round(roofline_s / seconds, 3)}
               for name, batch, seconds in rows]
    speedup = rows[2][2] / rows[0][2]
    return {'machine': machine, 'results': results, 'speedup_vs_reference_b1': round(speedup, 2),
            'max_relative_difference_vs_reference': parity, 'repeats': repeats}


def print_table(report: dict) -> None:
    """Print the results as a fixed-width table."""
    machine = report['machine']
    print(f"{machine['cpu']} ({machine['cores']} cores), sgemm {machine['sgemm_gflops']} GFLOP/s,"
          f" torch {machine['torch']}")
    print(f"{'backend':28s} {'batch':>5s} {'ms/frame':>9s} {'roofline':>9s}")
    for row in report['results']:
        print(f"{row['backend']:28s} {row['batch']:5d} {row['ms_per_frame']:9.1f} "
              f"{row['roofline_fraction']:9.1%}")
    print(f"speed-up vs reference structure (batch 1): {report['speedup_vs_reference_b1']}x; "
          f"max relative map difference {report['max_relative_difference_vs_reference']:.1e}")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark, print the table and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--out', default='outputs/bench/inference.json')
    args = parser.parse_args(argv)
    report = run(args.repeats)
    print_table(report)
    write_report(report, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
