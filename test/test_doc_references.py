"""Every document a .py or .md file cites must be in the repository.

Every JSON file a document (README.md, docs/*.md) names as a path must be committed: figures
name the JSON they came from, and git-ignored outputs/ is never a source.

A citation is a path ending in ``.md`` (``docs/method.md``, ``README.md``, a Markdown link
target) or any path under ``docs/`` (``docs/benchmarks.md``, ``docs/ablation_rows.png``).
Relative Markdown links resolve from the citing file's folder; other paths from the
repository root, then from the citing file's folder. A dangling citation (a team note that
is not in the repository, a renamed document) fails with file, line and the citation.
"""

from pathlib import Path
import re
import subprocess

import pytest

REPO = Path(__file__).resolve().parents[1]
# A path-like token ending in .md, or a token starting with docs/ (any file under docs/).
CITATION = re.compile(r'(?<![\w./-])((?:\.{1,2}/)?(?:[\w.-]+/)*[\w.-]+\.md|docs/[\w./-]*[\w-])'
                      r'(?![\w/-])')
MARKDOWN_LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')
EXTERNAL = ('http://', 'https://', 'mailto:')
# A JSON file named with at least one folder (docs/bench/node.json); bare names such as
# metrics.json name what a program writes, not a source.
JSON_PATH = re.compile(r'(?<![\w./$-])((?:[\w.-]+/)+[\w.-]+\.json)(?![\w/-])')
# Anything under outputs/ ending in .json, globs included (outputs/bench/run_*.json).
OUTPUTS_JSON = re.compile(r'(?<![\w.-])outputs/[^\s`\'")]*\.json')


def tracked_sources():
    """Return the .py and .md files git tracks, plus untracked ones it does not ignore."""
    listed = subprocess.run(
        ['git', 'ls-files', '--cached', '--others', '--exclude-standard', '*.py', '*.md'],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def find_citations(text: str, markdown: bool = True):
    """Yield (line number, cited path, is a Markdown link) for every citation in ``text``.

    ``markdown`` also reads ``[text](target)`` links (not in Python, where ``](`` is code).
    """
    for number, line in enumerate(text.splitlines(), start=1):
        links = set()
        for match in MARKDOWN_LINK.finditer(line if markdown else ''):
            target = match.group(1)
            if not target.startswith(EXTERNAL):
                links.add(target)
                yield number, target, True
        for match in CITATION.finditer(line):
            token = match.group(1).rstrip('.')
            start = match.start(1)
            if token in links or line[max(0, start - 8):start].endswith(('://', 'www.')):
                continue
            if re.search(r'https?://\S*$', line[:start]):
                continue  # part of a URL
            yield number, token, False


def citation_exists(citing: Path, cited: str, is_link: bool) -> bool:
    """Return True when the cited path names a file or folder of the repository."""
    candidates = [citing.parent / cited] if is_link else [REPO / cited, citing.parent / cited]
    return any(candidate.exists() for candidate in candidates)


def find_dangling(files):
    """Return ``path:line: citation`` for every citation that names nothing."""
    problems = []
    for path in files:
        text = path.read_text(errors='replace')
        for number, cited, is_link in find_citations(text, path.suffix == '.md'):
            if not citation_exists(path, cited, is_link):
                problems.append(f'{path.relative_to(REPO)}:{number}: {cited}')
    return problems


def test_every_cited_document_is_in_the_repository():
    this_file = Path(__file__).resolve()  # its examples of missing documents are on purpose
    problems = find_dangling(path for path in tracked_sources() if path.resolve() != this_file)
    assert problems == [], 'documents cited but not in the repository:\n' + '\n'.join(problems)


def test_the_design_documents_exist():
    for name in ('method.md', 'ros_interface.md', 'export.md', 'architecture.md'):
        assert (REPO / 'docs' / name).is_file(), name


@pytest.mark.parametrize('text, cited', [
    ('see METHOD.md 3.6', 'METHOD.md'),
    ('"""Order (EXPORT.md): TensorRT first."""', 'EXPORT.md'),
    ('# details in docs/missing.md, "Topics"', 'docs/missing.md'),
    ('the [notes](../notes/ARCHITECTURE.md#layers)', '../notes/ARCHITECTURE.md'),
    ('the sheet docs/absent_rows.png', 'docs/absent_rows.png'),
])
def test_a_missing_document_is_reported(tmp_path, text, cited):
    citing = REPO / 'test' / 'example.py'  # never written: only its folder matters
    found = [(number, path) for number, path, _ in find_citations(text)]
    assert found == [(1, cited)]
    assert not citation_exists(citing, cited, cited.startswith('..'))


@pytest.mark.parametrize('text', [
    'see docs/method.md, "Training step"',
    'see [the ROS interface](docs/ros_interface.md#topics)',
    'results in docs/benchmarks.md and docs/ablation_rows.png',
    'README.md says so',
    'https://github.com/ros2/ros2_documentation/blob/rolling/README.md',
])
def test_an_existing_document_or_a_url_passes(text):
    citing = REPO / 'README.md'
    assert [cited for _, cited, is_link in find_citations(text)
            if not citation_exists(citing, cited, is_link)] == []


def committed_files():
    """Return the repository paths git tracks (the index, not the work tree)."""
    listed = subprocess.run(['git', 'ls-files', '--cached'], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    return set(listed)


def uncommitted_json(text: str, document: str, committed: set):
    """Return ``document:line: reason`` for every JSON ``text`` cites that git does not hold.

    ``document`` is the citing file's repository path; a cited path resolves from the
    repository root or from the document's folder.
    """
    folder = Path(document).parent
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in OUTPUTS_JSON.finditer(line):
            problems.append(f'{document}:{number}: {match.group(0)} (outputs/ is git-ignored)')
        for match in JSON_PATH.finditer(line):
            cited = match.group(1)
            if cited.startswith('outputs/'):
                continue  # reported above
            if not {cited, (folder / cited).as_posix()} & committed:
                problems.append(f'{document}:{number}: {cited} (not in git)')
    return problems


def test_every_json_a_document_cites_is_committed():
    committed = committed_files()
    problems = []
    for path in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
        problems += uncommitted_json(path.read_text(), path.relative_to(REPO).as_posix(),
                                     committed)
    assert problems == [], 'JSON cited but not committed:\n' + '\n'.join(problems)


@pytest.mark.parametrize('text, expected', [
    ('(`outputs/bench/node.json`)', ['outputs/bench/node.json (outputs/ is git-ignored)']),
    ('JSON: `outputs/bench/transport_post720_*.json`.',
     ['outputs/bench/transport_post720_*.json (outputs/ is git-ignored)']),
    ('from docs/bench/missing.json', ['docs/bench/missing.json (not in git)']),
    ('from docs/bench/node.json and bench/node.json', []),
    ('writes metrics.json and $OUT/suite.json', []),
])
def test_json_citations_are_checked(text, expected):
    found = uncommitted_json(text, 'docs/example.md', {'docs/bench/node.json'})
    assert found == [f'docs/example.md:1: {reason}' for reason in expected]
