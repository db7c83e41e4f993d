"""The README and docs/ pages: the README fits in one read, every relative link and image
resolves (anchors into Markdown files included, by GitHub's heading slugs), and every page of
docs/ is reachable from the README. Plain text processing: no JAX."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')
DOCS = os.path.join(ROOT, 'docs')
MAX_README_LINES = 400
# CI runs these two commands from the README; they must stay as they are.
QUICK_START = (
    'pip install -r requirements.txt && python train.py --config configs/linear_regression.py:tiny'
    ' --workdir runs/linreg_tiny && python eval.py --workdir runs/linreg_tiny',
    'pip install -r requirements.txt && python -m pytest -q',
)

_FENCE = re.compile(r'^(```|~~~)')
_INLINE_CODE = re.compile(r'`[^`]*`')
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_HEADING = re.compile(r'^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
_EXTERNAL = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')   # http:, https:, mailto:, ...


def _prose_lines(text):
  """The lines of a Markdown text outside fenced code blocks."""
  fenced = False
  for line in text.split('\n'):
    if _FENCE.match(line.lstrip()):
      fenced = not fenced
      continue
    if not fenced:
      yield line


def slug(heading):
  """GitHub's anchor for a heading: link markup and code ticks dropped, lower case, every
  character other than a letter, digit, underscore, hyphen or space removed, spaces to hyphens."""
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
  text = re.sub(r'[^\w\- ]', '', text.lower())
  return text.replace(' ', '-')


def anchors(path):
  """Every anchor the headings of a Markdown file define (repeated headings get -1, -2, ...)."""
  seen, found = {}, set()
  with open(path, encoding='utf-8') as f:
    for line in _prose_lines(f.read()):
      m = _HEADING.match(line)
      if not m:
        continue
      base = slug(m.group(2))
      count = seen.get(base, 0)
      seen[base] = count + 1
      found.add(base if count == 0 else f'{base}-{count}')
  return found


def links(path):
  """The targets of every link and image of a Markdown file, outside code."""
  with open(path, encoding='utf-8') as f:
    prose = '\n'.join(_prose_lines(f.read()))
  return _LINK.findall(_INLINE_CODE.sub('', prose))


def broken_links(path):
  """'target (why)' for every relative link or image of `path` that does not resolve."""
  broken = []
  for target in links(path):
    if _EXTERNAL.match(target):
      continue
    file_part, _, anchor = target.partition('#')
    resolved = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if file_part else path)
    if not os.path.exists(resolved):
      broken.append(f'{target} (no such file)')
    elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
      broken.append(f'{target} (no heading with anchor #{anchor})')
  return broken


def _pages():
  return sorted(os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith('.md'))


def test_readme_fits_in_one_read():
  with open(README, encoding='utf-8') as f:
    num_lines = len(f.read().splitlines())
  assert num_lines <= MAX_README_LINES, (
      f'README.md has {num_lines} lines (at most {MAX_README_LINES}): move detail to docs/')


def test_readme_keeps_the_quick_start_commands():
  with open(README, encoding='utf-8') as f:
    lines = f.read().split('\n')
  for command in QUICK_START:
    assert command in lines, command


@pytest.mark.parametrize('path', [README] + _pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_links_and_images_resolve(path):
  assert broken_links(path) == []


def test_every_docs_page_is_linked_from_readme():
  linked = {os.path.normpath(os.path.join(ROOT, t.partition('#')[0]))
            for t in links(README) if not _EXTERNAL.match(t)}
  unlinked = [os.path.relpath(p, ROOT) for p in _pages() if p not in linked]
  assert unlinked == []


@pytest.mark.parametrize('heading, expected', [
    ('Results', 'results'),
    ("Kirsch et al.'s task family", 'kirsch-et-als-task-family'),
    ('Runs that start from runs; frozen companions', 'runs-that-start-from-runs-frozen-companions'),
    ('In-context regression (Garg et al. 2022)', 'in-context-regression-garg-et-al-2022'),
    ('Leaving the plateau: `python -m x --workdir runs/a_b`',
     'leaving-the-plateau-python--m-x---workdir-runsa_b'),
    ('Which learner? Akyürek et al. 2022', 'which-learner-akyürek-et-al-2022'),
    ('See [the page](other.md)', 'see-the-page'),
])
def test_slug_follows_github(heading, expected):
  assert slug(heading) == expected


GOOD_PAGE = '''# Title

## A section: with `code`

See [the other page](other.md), [its part](other.md#part-two), [this part](#a-section-with-code),
![a figure](fig.png), [a site](https://example.org/missing) and `[in code](missing.md)`.

```bash
echo "[in a fenced block](missing.md)"
```
'''


@pytest.mark.parametrize('line, reason', [
    ('[gone](missing.md)', 'no such file'),
    ('![gone](missing.png)', 'no such file'),
    ('[no such part](other.md#part-three)', 'no heading with anchor #part-three'),
    ('[no such part here](#nowhere)', 'no heading with anchor #nowhere'),
    ('[a folder too far](../../other.md)', 'no such file'),
])
def test_link_checker_reports_a_broken_link(tmp_path, line, reason):
  (tmp_path / 'other.md').write_text('# Other\n\n## Part two\n\ntext\n')
  (tmp_path / 'fig.png').write_bytes(b'\x89PNG')
  page = tmp_path / 'page.md'
  page.write_text(GOOD_PAGE)
  assert broken_links(str(page)) == []
  page.write_text(GOOD_PAGE + '\n' + line + '\n')
  assert [b.split(' (')[1].rstrip(')') for b in broken_links(str(page))] == [reason]
