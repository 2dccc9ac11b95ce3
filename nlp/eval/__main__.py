"""`python -m nlp.eval [--errors] [--record]`: P/R/F1 of ours vs medSpaCy's default rules (make eval-nlp)."""

from __future__ import annotations

import json
import sys

import click

from nlp.eval import RECORDED_SCORES, evaluate, format_table, load_corpus


@click.command()
@click.option("--errors", is_flag=True, help="List every miss, extra and attribute error of our pipeline.")
@click.option("--record", is_flag=True, help="Write our scores to recorded_scores.json (the test floor).")
def main(errors: bool, record: bool) -> None:
    n = len(load_corpus())
    ours = evaluate(tuned=True)
    base = evaluate(tuned=False)
    click.echo(f"corpus: {n} sentences, {ours.concept.tp + ours.concept.fn} gold mentions")
    click.echo(format_table(ours.scores(), base.scores()))
    if errors:
        click.echo("\n".join(ours.errors))
    if record:
        RECORDED_SCORES.write_text(json.dumps({"ours": ours.scores(), "baseline": base.scores()}, indent=1) + "\n")
        click.echo(f"recorded to {RECORDED_SCORES}")


if __name__ == "__main__":
    sys.exit(main())
