"""The encoder's options: one frozen dataclass, validated once, with measured defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from .container import MAX_ERROR, MAX_FEATHER, MAX_SCALE

SUBJECT_MODES = ("lossless", "near-lossless", "high", "jpeg")
SUBJECT_CODINGS = ("auto", "webp", "med", "cm", "jpeg")
NO_SUBJECT_POLICIES = ("keep", "background", "error")
DEFAULT_MAX_ERROR = 2
DEFAULT_SUBJECT_QUALITY = 95


def max_error_of_quality(quality: int) -> int:
    """The maximum error of subject="high" at ``quality`` (1-100) where its subject cannot
    be DCT-coded (RGBA, or subject_coding="cm"): 95 -> 1, 90 -> 2, 80 -> 4, 70 -> 6,
    50 -> 10, 1 -> 20."""
    return max(1, (102 - quality) // 5)


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode a .ppan file.

    background_scale: the background is stored at 1/scale of the size (1-8).
    background_quality: WebP quality of the background (0-100).
    feather: radius in pixels of the blend outside the subject (0-32).
    subject: "lossless" keeps every subject pixel bit-exact; "jpeg" too, by keeping the
        quantised DCT coefficients of the JPEG file the image was opened from (an error if
        that JPEG is not at hand or cannot be kept); "near-lossless" keeps every channel of
        every subject pixel within ``max_error`` of the original; "high" codes the subject
        as a JPEG at ``subject_quality`` would, its coefficients requantised for this
        format's coder (never a larger subject error than that JPEG's), for a fraction of
        the JPEG's bytes. An RGBA image, or subject_coding="cm", keeps "high" near-lossless
        (the range coder at max_error_of_quality(subject_quality)).
    max_error: "near-lossless" only: the largest error per channel, 1-31 (default 2;
        PSNR >= 20 log10(255 / max_error)).
    subject_quality: "high" only: the JPEG quality, 1-100 (default 95, where "high"
        saves the most against every codec measured: docs/benchmarks/size.md).
    subject_coding: "auto": the context-modelling coder "cm" (the smallest pixel coding on
        every photo measured; near-lossless in those modes), and when the image came from a
        JPEG file that reproduces it, the JPEG's coefficients if they are smaller. Or force
        one: "cm", "jpeg" (exact, so it meets any max_error), "webp" (WebP lossless) or
        "med" (MED + Brotli), the last two for "lossless" only.
    no_subject: what to do when the mask (given or found) is empty: "keep" codes the whole
        frame as the subject, in the ``subject`` mode (a JPEG source keeps all its
        coefficients), so the photo is never silently reduced to its blurred background;
        "background" stores the background alone; "error" raises ValueError.
    """

    background_scale: int = 4
    background_quality: int = 70
    feather: int = 2
    subject: str = "lossless"
    subject_coding: str = "auto"
    max_error: int | None = None
    subject_quality: int | None = None
    no_subject: str = "keep"

    def __post_init__(self):
        _check_int("background_scale", self.background_scale, 1, MAX_SCALE)
        _check_int("background_quality", self.background_quality, 0, 100)
        _check_int("feather", self.feather, 0, MAX_FEATHER)
        _check_choice("subject", self.subject, SUBJECT_MODES)
        _check_choice("subject_coding", self.subject_coding, SUBJECT_CODINGS)
        _check_choice("no_subject", self.no_subject, NO_SUBJECT_POLICIES)
        if self.subject == "jpeg" and self.subject_coding not in ("auto", "jpeg"):
            raise ValueError(f"subject='jpeg' cannot use subject_coding={self.subject_coding!r}")
        if self.subject in ("near-lossless", "high") and self.subject_coding not in ("auto", "cm", "jpeg"):
            raise ValueError(f"subject={self.subject!r} needs subject_coding 'auto', 'cm' or 'jpeg'")
        if self.max_error is not None:
            if self.subject != "near-lossless":
                raise ValueError("max_error goes with subject='near-lossless'")
            _check_int("max_error", self.max_error, 1, MAX_ERROR)
        if self.subject_quality is not None:
            if self.subject != "high":
                raise ValueError("subject_quality goes with subject='high'")
            _check_int("subject_quality", self.subject_quality, 1, 100)

    @property
    def near(self) -> int:
        """The largest error allowed per subject channel (0: lossless)."""
        if self.subject == "near-lossless":
            return DEFAULT_MAX_ERROR if self.max_error is None else self.max_error
        if self.subject == "high":
            return max_error_of_quality(DEFAULT_SUBJECT_QUALITY if self.subject_quality is None else self.subject_quality)
        return 0

    @property
    def dct_quality(self) -> int:
        """The JPEG quality of a DCT-coded "high" subject (0: not that mode)."""
        if self.subject != "high":
            return 0
        return DEFAULT_SUBJECT_QUALITY if self.subject_quality is None else self.subject_quality

    @property
    def coding(self) -> str:
        """The subject coding to use, or "auto"."""
        return "jpeg" if self.subject == "jpeg" else self.subject_coding

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> EncodeOptions:
        """Pick this class's fields out of Pillow's ``encoderinfo`` (other keys are ignored),
        with ``quality=`` and ``lossless=`` read as :func:`pillow_names` says."""
        names = {f.name for f in fields(cls)}
        params = pillow_names({k: v for k, v in params.items() if v is not None})
        return cls(**{k: v for k, v in params.items() if k in names})


# The names Pillow's WebP plugin, pillow-heif, pillow-avif-plugin and pillow-jxl-plugin use.
def pillow_names(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``quality`` and ``lossless`` turned into this package's options.

    ``quality=q`` (1-100) is ``subject="high", subject_quality=q``; ``lossless=True`` is
    ``subject="lossless"`` (``"jpeg"`` is exact too, and allowed); ``lossless=False`` is
    ``subject="high"`` unless a lossy ``subject`` is given. The background keeps its own
    ``background_quality``. Contradictions raise ValueError.
    """
    params = dict(params)
    quality, lossless, subject = params.pop("quality", None), params.pop("lossless", None), params.get("subject")
    if lossless is not None:
        if not isinstance(lossless, bool):
            raise ValueError(f"lossless must be True or False, got {lossless!r}")
        allowed = ("lossless", "jpeg") if lossless else ("near-lossless", "high")
        if subject is not None and subject not in allowed:
            raise ValueError(f"lossless={lossless} contradicts subject={subject!r}")
        if lossless and quality is not None:
            raise ValueError("lossless=True takes no quality (quality= is the subject quality of a lossy subject)")
        params.setdefault("subject", "lossless" if lossless else "high")
    if quality is not None:
        _check_int("quality", quality, 1, 100)
        if params.get("subject", "high") != "high":
            raise ValueError(f"quality= is the subject quality of subject='high', not of subject={params['subject']!r}")
        if params.get("subject_quality", quality) != quality:
            raise ValueError(f"quality={quality} contradicts subject_quality={params['subject_quality']!r}")
        params |= {"subject": "high", "subject_quality": quality}
    return params


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
