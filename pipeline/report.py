"""OUT/report.html: one self-contained page of plots and counts for a finished run.

The page needs nothing but a browser: the styles are inline and the PNG plots are
embedded as base64 data URIs, so it opens from disk, offline, and can be mailed around.
`pipeline.report_data` gathers the data and `pipeline.report_plots` draws the plots.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Mapping

from pipeline import files
from pipeline.report_data import (
    DEFAULT_SOURCE_FIELD,
    MAX_SOURCES,
    RunData,
    load_run,
    top_groups,
)

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
# Segment kinds in the order the "labels by kind" plot shows them.
KIND_ORDER = ("prose", "code")

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.6em 2em 0.6em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; }
.warning { color: #c62828; font-weight: 600; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
code { font-size: 0.95em; }
"""


class ReportDependencyError(ImportError):
    """matplotlib, which draws the report's plots, is not installed."""


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportDependencyError(
            "the report needs matplotlib; install it with pip install 'feedback-annotate[report]'"
        ) from None


def build_report(output_dir: str, source_field: str = DEFAULT_SOURCE_FIELD) -> str:
    """Write OUT/report.html for a finished run and return its path.

    Args:
        output_dir: output directory of `annotate run`.
        source_field: metadata field that names a document's source; documents without
            it are grouped by input file.

    Raises:
        ReportDependencyError: matplotlib is missing.
        pipeline.report_data.NotAnOutputDirectoryError: `output_dir` contains no manifest.json.
    """
    require_matplotlib()
    data = load_run(output_dir, source_field)
    page = render_page(data, source_field).encode("utf-8")
    path = files.join(output_dir, REPORT_FILE)
    files.write_atomically(path, lambda stream: stream.write(page))
    logger.info("wrote the run report %s", path)
    return path


def render_page(data: RunData, source_field: str) -> str:
    sections = [
        header_section(data),
        counts_section(data),
        thresholds_section(data),
        scores_section(data),
        labels_section(data, source_field),
    ]
    title = f"Run report: {data.output_dir}"
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def header_section(data: RunData) -> str:
    manifest = data.manifest
    config = manifest.get("config", {})
    rows = [
        ("output", data.output_dir),
        ("inputs", f"{config.get('inputs', '-')} ({manifest.get('input_files', '-')} files)"),
        ("scorers", ", ".join(data.scorer_names)),
        ("started", manifest.get("started_at", "-")),
        ("finished", manifest.get("finished_at", "-")),
    ]
    if manifest.get("config_file"):
        rows.append(("config file", manifest["config_file"]))
    items = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<h1>Run report</h1>\n<table class="meta">{items}</table>'


def counts_section(data: RunData) -> str:
    counts = data.manifest.get("counts", {})
    all_counts = data.manifest.get("all_counts", {})
    documents = [
        ("read", counts.get("documents_read")),
        ("written", counts.get("documents_written")),
        ("rejected", counts.get("documents_rejected")),
        *prefixed_rows(all_counts, "rejected_", "rejected: "),
        ("removed as duplicates", counts.get("documents_duplicates")),
        *prefixed_rows(all_counts, "repaired_", "repaired: "),
    ]
    segments = [
        ("good", counts.get("segments_good")),
        ("bad", counts.get("segments_bad")),
        ("blank (no label)", counts.get("segments_blank")),
        *prefixed_rows(all_counts, "segments_", "kind: ", skip=("good", "bad", "blank")),
        *prefixed_rows(all_counts, "scorer_errors_", "scorer errors: "),
    ]
    balance = ""
    if counts.get("balanced") is False:
        balance = (
            '<p class="warning">The document counts do not balance: read differs from '
            "written + rejected + removed as duplicates.</p>"
        )
    return (
        "<h2>Counts</h2>\n"
        + balance
        + '<div class="tables">'
        + count_table("documents", documents)
        + count_table("segments", segments)
        + "</div>"
    )


def prefixed_rows(
    counts: Mapping[str, int], prefix: str, label: str, skip: Iterable[str] = ()
) -> list[tuple[str, int]]:
    """Rows for every counter named PREFIX + reason, such as ``rejected_invalid_json``."""
    rows = []
    for key, value in sorted(counts.items()):
        reason = key[len(prefix) :]
        if key.startswith(prefix) and reason not in skip:
            rows.append((label + reason, value))
    return rows


def count_table(title: str, rows: Iterable[tuple[str, int | None]]) -> str:
    body = "".join(
        f'<tr><td>{escape(name)}</td><td class="number">{format_count(value)}</td></tr>'
        for name, value in rows
    )
    return f'<table><tr><th colspan="2">{escape(title)}</th></tr>{body}</table>'


def thresholds_section(data: RunData) -> str:
    rows = []
    for name in data.scorer_names:
        entry = data.thresholds.get(name, {})
        rows.append(
            "<tr>"
            f"<td><code>{escape(name)}</code></td>"
            f'<td class="number">{format_number(entry.get("percentile"), "g")}</td>'
            f'<td class="number">{format_number(entry.get("threshold"), ".6g")}</td>'
            f'<td class="number">{format_count(entry.get("num_segments"))}</td>'
            f'<td class="number">{format_number(entry.get("fraction_good"), ".1%")}</td>'
            "</tr>"
        )
    header = (
        "<tr><th>scorer</th><th>P (%)</th><th>threshold</th><th>scored segments</th>"
        "<th>labelled good</th></tr>"
    )
    return f"<h2>Thresholds</h2>\n<table>{header}{''.join(rows)}</table>"


def scores_section(data: RunData) -> str:
    from pipeline.report_plots import png_data_uri, score_histogram

    parts = [
        "<h2>Scores</h2>",
        "<p>Segment scores of each scorer. A segment is good when every scorer that applies "
        "to it scores at or below that scorer's threshold (the dashed line).</p>",
    ]
    for name in data.scorer_names:
        if name not in data.histograms:
            parts.append(f"<p>No segment was scored by <code>{escape(name)}</code>.</p>")
            continue
        edges, counts, log_x = data.histograms[name]
        entry = data.thresholds.get(name, {})
        note = histogram_note(entry, data.ranges[name].zeros if log_x else 0)
        figure = score_histogram(name, edges, counts, log_x, entry.get("threshold"), note)
        parts.append(plot_html(f"scores-{name}", png_data_uri(figure), f"Scores of {name}"))
    return "\n".join(parts)


def histogram_note(entry: Mapping, zeros_off_axis: int) -> str:
    fraction = entry.get("fraction_good")
    note = (
        f"P={format_number(entry.get('percentile'), 'g')}: "
        f"{format_number(fraction, '.1%')} of {format_count(entry.get('num_segments'))} "
        "scored segments at or below the threshold"
    )
    if zeros_off_axis:
        note += f"; {zeros_off_axis:,} scores of exactly 0 are left of the log axis"
    return note


def labels_section(data: RunData, source_field: str) -> str:
    from pipeline.report_plots import label_bars, png_data_uri

    kinds = [kind for kind in KIND_ORDER if kind in data.labels_by_kind]
    kinds += sorted(set(data.labels_by_kind) - set(KIND_ORDER))
    by_kind = label_bars("Segment labels by document kind", data.labels_by_kind, kinds)
    groups, order = top_groups(data.labels_by_source, MAX_SOURCES)
    by_source = label_bars("Segment labels by source", groups, order)
    sources = len(data.labels_by_source)
    caption = (
        f"A document's source is its metadata field <code>{escape(source_field)}</code>, or "
        f"its input file when it has none. {sources:,} sources"
    )
    if len(order) < sources:
        caption += f"; the {len(order) - 1} with the most segments are shown"
    return "\n".join(
        [
            "<h2>Labels</h2>",
            plot_html("labels-by-kind", png_data_uri(by_kind), "Segment labels by kind"),
            f"<p>{caption}.</p>",
            plot_html("labels-by-source", png_data_uri(by_source), "Segment labels by source"),
        ]
    )


def plot_html(element_id: str, uri: str, alt: str) -> str:
    return f'<figure id="{escape(element_id)}"><img src="{uri}" alt="{escape(alt)}"></figure>'


def format_count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)
