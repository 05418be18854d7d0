"""Every renderer, over objects computed elsewhere: the summary table (text, JSON, Markdown, plot) over
cnnspec.checker.summary's rows, the architecture diff over cnnspec.review.diff's SpecDiff, and the
reference tables of docs/spec-language.md (no torch)."""
