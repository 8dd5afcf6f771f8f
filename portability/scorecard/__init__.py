"""Scorecards from results: summary figures, Markdown for a PR comment, JSON, JUnit XML, HTML, the
serving table and the text escaping every output format shares."""
