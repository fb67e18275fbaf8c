"""Training data: load and validate files, check their quality, split them by prompt."""

from training.data.errors import MAX_ERRORS, DataError, DataValidationError
from training.data.examples import Example, LikeExample, PairExample, RatingExample
from training.data.loaders import SUPPORTED_SUFFIXES, Dataset, load_dataset, load_examples
from training.data.quality import (
    Agreement,
    Contradiction,
    DuplicateGroup,
    LowAgreementItem,
    QualityReport,
    check_quality,
    krippendorff_alpha,
    normalize_text,
)
from training.data.report import describe, format_report
from training.data.split import split_by_prompt

__all__ = [
    "MAX_ERRORS",
    "SUPPORTED_SUFFIXES",
    "Agreement",
    "Contradiction",
    "DataError",
    "DataValidationError",
    "Dataset",
    "DuplicateGroup",
    "Example",
    "LikeExample",
    "LowAgreementItem",
    "PairExample",
    "QualityReport",
    "RatingExample",
    "check_quality",
    "describe",
    "format_report",
    "krippendorff_alpha",
    "load_dataset",
    "load_examples",
    "normalize_text",
    "split_by_prompt",
]
