"""Charts the CLI draws (matplotlib, a development dependency, without a display)."""

from __future__ import annotations

from pathlib import Path

from local.connection import CliError


def plot_daily_cost(path: Path, business_id: str, days: dict[str, dict[str, int]]) -> None:
    """Cost per day, stacked by model, as a PNG (matplotlib, without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    models = sorted({model for spend in days.values() for model in spend})
    labels = list(days)
    figure, axes = pyplot.subplots(figsize=(max(6.0, 0.35 * len(labels)), 4.0))
    bottom = [0.0] * len(labels)
    for model in models:
        heights = [days[day].get(model, 0) / 1e9 for day in labels]
        axes.bar(labels, heights, bottom=bottom, label=model)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_title(f"{business_id}: cost per day by model (USD)")
    axes.set_ylabel("USD")
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    if models:
        axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror}") from error
    finally:
        pyplot.close(figure)
