r"""Convert a released SelectiveCL ``.pth`` state dict into our bundle format.

Example::

    python -m affordance_grounding.import_official --checkpoint best_seen.pth \\
        --labels seen --out models/selectivecl_seen.pt
"""

import argparse
import dataclasses
import logging
import sys
from typing import List, Optional

from affordance_grounding.config import load_model_config, ModelConfig
from affordance_grounding.model.backbones import WeightsUnavailableError
from affordance_grounding.model.checkpoint import (
    CheckpointError, import_official_state_dict, load_checkpoint_file, save_bundle)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True, help='released SelectiveCL .pth file')
    parser.add_argument('--out', required=True, help='bundle file to write')
    parser.add_argument('--labels', default='seen',
                        help='label set of the checkpoint: seen, unseen or hico_iif')
    parser.add_argument('--config', help='model config YAML (default: the published model)')
    parser.add_argument('--no-embed-backbones', action='store_true',
                        help='do not embed the backbone weights; load them by name at run time')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the conversion; returns a process exit code."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    logging.getLogger('affordance_grounding.model.backbones').setLevel(logging.INFO)  # sources
    args = build_parser().parse_args(argv)
    config = load_model_config(args.config) if args.config else ModelConfig()
    config = dataclasses.replace(config, labels=args.labels)
    try:
        state_dict = load_checkpoint_file(args.checkpoint)
        grounder, person_text, training_state = import_official_state_dict(
            state_dict, config, embed_backbones=not args.no_embed_backbones)
    except (CheckpointError, FileNotFoundError, WeightsUnavailableError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    path = save_bundle(args.out, grounder, person_text=person_text,
                       include_backbones=not args.no_embed_backbones,
                       training_state=training_state,
                       metadata={'source': 'official SelectiveCL', 'file': str(args.checkpoint)})
    print(f'wrote {path} ({len(grounder.labels)} labels)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
