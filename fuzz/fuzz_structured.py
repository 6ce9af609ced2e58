"""Harness (d): ``fuzz_open``'s target with a structure-aware mutator.

The mutator (``ppan_fuzz.structured_mutate``) parses the input into chunks, mutates chunk
payloads (layer-aware: header fields, WebP headers, MASK runs and SUBJ residuals are
decompressed, mutated and recompressed, Brotli bombs swapped in), types, lengths and the
order, and writes the file back with correct CRCs, so that inputs get past the chunk layer.
Run: ``python fuzz/fuzz_structured.py fuzz/corpus/structured fuzz/seeds/files -max_total_time=60``
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ppan_fuzz  # noqa: E402

ppan_fuzz.setup(instrument=__name__ == "__main__")

from fuzz_open import TestOneInput  # noqa: E402,F401

if __name__ == "__main__":
    ppan_fuzz.main(TestOneInput, structured=True, seeds_name="files")
