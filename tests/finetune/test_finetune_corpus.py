"""Corpus preparation: Gutenberg cleaning, whole-work split, fixed token blocks."""

from __future__ import annotations

import numpy as np
import pytest

from mlpipeline.errors import DataError
from mlpipeline.finetune.corpus import clean_gutenberg, list_works, make_blocks, split_works, subsample

MODERN = """\ufeffThe Project Gutenberg eBook of Hamlet\r
\r
This eBook is for the use of anyone anywhere in the United States.\r
\r
*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\r
HAMLET   \r
\r
\r
\r
\r
\r
To be, or not to be.\r
*** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\r
Section 1. General Terms of Use and Redistributing Project Gutenberg-tm\r
"""

LEGACY = """The Project Gutenberg Etext of Macbeth
**Welcome To The World of Free Plain Vanilla Electronic Texts**
*****These Etexts Are Prepared By Thousands of Volunteers!*****
Information about Project Gutenberg
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

MACBETH

When shall we three meet again?

End of Project Gutenberg's Etext of Macbeth
"""


def test_modern_markers_crlf_and_blank_runs():
    assert clean_gutenberg(MODERN) == "HAMLET\n\n\nTo be, or not to be.\n"  # at most two blank lines


def test_legacy_small_print_header_and_footer():
    assert clean_gutenberg(LEGACY) == "MACBETH\n\nWhen shall we three meet again?\n"


def test_text_without_boilerplate_is_kept_and_cleaning_is_idempotent():
    text = "KING.\nTake her away.\n\n[Exeunt.]\n"
    assert clean_gutenberg(text) == text
    assert clean_gutenberg(clean_gutenberg(MODERN)) == clean_gutenberg(MODERN)


def test_shipped_works_are_the_42_gutenberg_texts_and_clean():
    works = list_works()
    assert len(works) == 42 and "hamlet" in works and "sonnets" in works
    assert not any(name.endswith("_f") for name in works), "First Folio duplicates must not be used"
    total = 0
    for name, path in works.items():
        text = clean_gutenberg(path.read_text(encoding="utf-8", errors="replace"))
        assert "project gutenberg" not in text.lower(), name
        assert "\r" not in text and "\n\n\n\n" not in text, name
        total += len(text)
    assert 4_900_000 < total < 5_200_000


def test_split_holds_out_whole_works_seeded_and_disjoint():
    names = [f"w{i}" for i in range(10)]
    train, held = split_works(names, 3, seed=5)
    assert len(held) == 3 and sorted(train + held) == sorted(names) and not set(train) & set(held)
    assert split_works(list(reversed(names)), 3, seed=5) == (train, held), "order of the input must not matter"
    assert any(split_works(names, 3, seed=s)[1] != held for s in range(6, 12)), "the seed must matter"


@pytest.mark.parametrize("heldout", [0, 4])
def test_split_refuses_to_hold_out_nothing_or_everything(heldout):
    with pytest.raises(DataError, match="cannot hold out"):
        split_works(["a", "b", "c", "d"], heldout, seed=0)


def test_blocks_concatenate_with_separator_and_drop_the_tail():
    blocks = make_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4, separator_id=0)
    # stream: 1 2 3 0 | 4 5 0 6 | 7 8 9 0  (12 tokens = 3 full blocks, nothing dropped)
    assert blocks.dtype == np.int32 and blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    blocks5 = make_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=5, separator_id=0)
    assert blocks5.tolist() == [[1, 2, 3, 0, 4], [5, 0, 6, 7, 8]], "incomplete tail (9, 0) dropped"


def test_blocks_refuse_too_little_text():
    with pytest.raises(DataError, match="make no block"):
        make_blocks([[1, 2]], block_size=8, separator_id=0)


def test_subsample_is_seeded_ordered_and_a_no_op_under_the_limit():
    blocks = np.arange(100, dtype=np.int32).reshape(50, 2)
    a, b = subsample(blocks, 10, seed=1), subsample(blocks, 10, seed=1)
    assert a.shape == (10, 2) and np.array_equal(a, b)
    assert np.all(np.diff(a[:, 0]) > 0), "kept rows stay in corpus order"
    assert not np.array_equal(a, subsample(blocks, 10, seed=2))
    assert subsample(blocks, None, seed=1) is blocks and subsample(blocks, 50, seed=1) is blocks
