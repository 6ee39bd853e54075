"""DINO saliency from CLS attention of heads 0, 1, 3 on hand-built grids (docs/method.md)."""

from affordance_grounding.model.saliency import compute_saliency, SALIENCY_HEADS
import torch


def _hand_attention(generator):
    """Return (1, 6, 9) attention on a 3x3 grid whose mask is derived by hand below.

    Head 0 is above its mean (1/3) on the top row; head 1 is above its mean (2/3) on the middle
    column; head 3 has mean exactly 1 and only patch 2 is strictly above it (the patches equal
    to the mean do not count). Heads 2, 4 and 5 are random and must be ignored.
    """
    attention = torch.rand(1, 6, 9, generator=generator, dtype=torch.float64)
    attention[0, 0] = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=torch.float64)
    attention[0, 1] = torch.tensor([0, 2, 0, 0, 2, 0, 0, 2, 0], dtype=torch.float64)
    attention[0, 3] = torch.tensor([0, 1, 2, 1, 1, 1, 1, 1, 1], dtype=torch.float64)
    return attention


# Votes: head 0 -> patches {0, 1, 2}; head 1 -> {1, 4, 7}; head 3 -> {2}.
# Mean vote: [1/3, 2/3, 2/3, 0, 1/3, 0, 0, 1/3, 0]; min-max -> [.5, 1, 1, 0, .5, 0, 0, .5, 0];
# its mean is 3.5 / 9 = 0.389, so the mask is the patches with a vote.
HAND_MASK = [1, 1, 1, 0, 1, 0, 0, 1, 0]


def test_saliency_heads_are_reference_heads():
    assert tuple(SALIENCY_HEADS) == (0, 1, 3)


def test_compute_saliency_matches_hand_mask():
    attention = _hand_attention(torch.Generator().manual_seed(0))
    mask = compute_saliency(attention)
    assert mask.shape == (1, 9)
    assert mask.tolist() == [[float(v) for v in HAND_MASK]]


def test_compute_saliency_ignores_heads_2_4_5():
    first = _hand_attention(torch.Generator().manual_seed(1))
    second = _hand_attention(torch.Generator().manual_seed(2))
    assert not torch.equal(first, second)
    assert torch.equal(compute_saliency(first), compute_saliency(second))


def test_compute_saliency_threshold_at_mean_is_strict():
    # A 2x2 grid where head 0 votes for patch 0 only, heads 1 and 3 are constant (no votes):
    # sal = [1/3, 0, 0, 0] -> min-max [1, 0, 0, 0] -> mean 0.25 -> mask [1, 0, 0, 0].
    attention = torch.zeros(1, 6, 4)
    attention[0, 0] = torch.tensor([0.7, 0.1, 0.1, 0.1])
    attention[0, 1] = 0.25
    attention[0, 3] = 0.25
    attention[0, [2, 4, 5]] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert compute_saliency(attention).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_compute_saliency_constant_attention_gives_empty_mask():
    attention = torch.full((2, 6, 9), 1.0 / 9.0)
    mask = compute_saliency(attention)
    assert torch.equal(mask, torch.zeros(2, 9))


def test_compute_saliency_all_heads_agree_on_half_grid():
    # Heads 0, 1 and 3 all pick patches {0, 3}: sal is binary, its mean 2/4 = 0.5 is not
    # reached by the zeros, so the mask equals the votes.
    attention = torch.zeros(1, 6, 4)
    attention[0, :, 0] = 0.4
    attention[0, :, 3] = 0.6
    assert compute_saliency(attention).tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_compute_saliency_is_per_image_in_a_batch():
    first = _hand_attention(torch.Generator().manual_seed(3))
    second = torch.flip(first, dims=[2])
    batch = torch.cat([first, second])
    mask = compute_saliency(batch)
    assert mask[0].tolist() == [float(v) for v in HAND_MASK]
    assert mask[1].tolist() == [float(v) for v in reversed(HAND_MASK)]
