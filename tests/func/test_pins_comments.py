"""`bisector pin` and `bisector pin rm` edit pins.toml in place: the user's comments and order stay."""

from __future__ import annotations

from tests.fixtures.cli import bisector
from tests.fixtures.repos import GitRepo, linear_history


def test_pin_add_and_rm_keep_comments_and_order(repo: GitRepo) -> None:
    shas = linear_history(repo, 4, culprit=4)
    assert bisector(repo.path, "pin", "zeta", "--rev", shas[0]).returncode == 0
    assert bisector(repo.path, "pin", "alpha", "--rev", shas[1]).returncode == 0
    path = repo.path / ".bisector" / "pins.toml"
    text = path.read_text()
    # New pins go at the end (no re-sorting); the user annotates the file.
    zeta, alpha = text.index("[pins.zeta]"), text.index("[pins.alpha]")
    assert zeta < alpha
    edited = (text[:zeta] + "# zeta: before the refactor\n" + text[zeta:alpha].rstrip("\n")
              + "\n\n# alpha: the release\n" + text[alpha:].replace("[pins.alpha]\n", "[pins.alpha]  # keep\n"))
    path.write_text(edited)

    res = bisector(repo.path, "pin", "beta", "--rev", shas[2], "--note", "added later")
    assert res.returncode == 0, res.stderr
    text = path.read_text()
    assert text.startswith(edited)  # appended, nothing else touched
    assert text.index("[pins.zeta]") < text.index("[pins.alpha]") < text.index("[pins.beta]")

    res = bisector(repo.path, "pin", "rm", "zeta")
    assert res.returncode == 0, res.stderr
    text = path.read_text()
    assert "[pins.zeta]" not in text and shas[0] not in text
    for comment in ("# bisector pins:", "# zeta: before the refactor", "# alpha: the release", "[pins.alpha]  # keep"):
        assert comment in text
    assert text.index("# alpha: the release") < text.index("[pins.alpha]") < text.index("[pins.beta]")
    listed = bisector(repo.path, "pins")
    assert listed.returncode == 0 and "alpha" in listed.stdout and "beta" in listed.stdout
    assert "zeta" not in listed.stdout
