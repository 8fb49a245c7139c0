"""A report as a PDF: its HTML page, print styles and all, laid out by WeasyPrint.

WeasyPrint (PyPI) implements CSS Paged Media, so the page numbers at the foot of each page and
in the contents come from the report's own stylesheet; it needs Pango, which this image has
(it comes with the Java runtime the Firestore emulator needs). The choice, and the browser's
print that was not chosen, are in docs/decisions/009-report-and-local-stack.md. The CLI is a
developer tool: WeasyPrint is a development dependency and no deployed function imports this module.
"""

from __future__ import annotations

from typing import NoReturn


class PdfError(RuntimeError):
    """A PDF cannot be made here; the message says what to install."""


def _no_fetching(url: str) -> NoReturn:
    # The report is self-contained; nothing in it may make the renderer reach the network or
    # read a local file (a link in a model's answer is text, but a renderer must not follow it).
    raise ValueError(f"the report loads nothing from outside ({url[:60]})")


def from_html(page: str) -> bytes:
    """The PDF of a standalone HTML page (its `print` media styles apply).

    Raises:
        PdfError: WeasyPrint or the Pango library it needs is missing.
    """
    try:
        import weasyprint
    except ImportError as error:
        raise PdfError(
            "PDF export needs WeasyPrint: run `make venv` (it installs the dev dependencies)"
        ) from error
    except OSError as error:  # WeasyPrint loads Pango when imported
        raise PdfError(
            "PDF export needs the Pango library (Debian: apt-get install libpango-1.0-0 "
            f"libpangoft2-1.0-0): {str(error).splitlines()[0]}"
        ) from error
    document: bytes = weasyprint.HTML(string=page, url_fetcher=_no_fetching).write_pdf()
    return document
