"""The recipes' fixed figures agree with the docs they cite."""

import re
from pathlib import Path

from keras_prune.recipes import m4_variants

DOCS = Path(__file__).resolve().parents[1] / "docs" / "c-export.md"


def _baseline_table() -> dict[str, int]:
    text = DOCS.read_text()
    section = text.split("### CMSIS-NN baseline\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| [\d,]+ \| ([\d,]+) \|", section, re.M)
    return {name: int(cycles.replace(",", "")) for name, cycles in rows}


def test_cmsis_nn_cycles_are_the_docs_table():
    table = _baseline_table()
    assert m4_variants.CMSIS_NN_CYCLES.items() <= table.items()


def test_csr_baseline_kernel_ships_with_the_package():
    source = m4_variants.CSR_SOURCE.read_text()
    assert "void csr_fc_s8(" in source and "void csr_conv_s8(" in source
