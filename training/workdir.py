"""Work-directory safety: an exclusive lock per training, tolerant metrics reading, and
one-line descriptions of file-system errors.

No JAX import here: this module is cheap to import (the lock test runs it in a subprocess).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from typing import Callable, List, Optional

LOCK_FILE = '.lock'


class WorkdirError(RuntimeError):
  """A work directory that cannot be used as asked (held by another run, unwritable, ...)."""


# ----------------------------------------------------------------------------- errors


def describe_os_error(error: OSError, action: str) -> str:
  """One line `<action> failed at <filename>: <strerror>` (the filename part only if known)."""
  reason = error.strerror or str(error) or type(error).__name__
  where = ''
  if getattr(error, 'filename', None) is not None:
    where = f' at {os.fsdecode(error.filename)}'
    if getattr(error, 'filename2', None) is not None:
      where += f' -> {os.fsdecode(error.filename2)}'
  return ' '.join(f'{action} failed{where}: {reason}'.split())


def find_os_error(error: BaseException) -> Optional[OSError]:
  """The first OSError in `error`'s cause/context chain (orbax and threads wrap them), or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


def is_out_of_space(error: OSError) -> bool:
  return error.errno in (errno.ENOSPC, errno.EDQUOT)


# ----------------------------------------------------------------------------- writability


def check_writable_dir(path: str) -> None:
  """Raises WorkdirError (one line) unless `path` is, or can be created as, a writable directory.

  Checks with `os.access` (which also reports read-only file systems); nothing is written.
  """
  path = os.path.abspath(path)
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise WorkdirError(f'{path} exists and is not a directory; choose another --workdir')
    if not os.access(path, os.W_OK | os.X_OK):
      raise WorkdirError(f'{path} is not writable by this user; fix its permissions or choose '
                         f'another --workdir')
    return
  # Does not exist yet: the nearest existing ancestor must be a writable directory.
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    up = os.path.dirname(parent)
    if up == parent:
      break
    parent = up
  if not os.path.isdir(parent):
    raise WorkdirError(f'cannot create {path}: {parent} is not a directory; choose another '
                       f'--workdir')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise WorkdirError(f'cannot create {path}: {parent} is not writable by this user; choose '
                       f'another --workdir')


# ----------------------------------------------------------------------------- lock


class WorkdirLock:
  """Exclusive lock on `<workdir>/.lock` for the lifetime of a training.

  `fcntl.flock` (non-blocking) on an open file: the kernel drops it when the holder exits or
  is killed, so a lock file left by a dead process does not block anyone. The file holds
  `pid host start-time` of the holder for the error message; it is never deleted (deleting
  would let two processes lock two different inodes of the same name).

  Use as a context manager, or call acquire()/release(). In a multi-host run only one
  process (process 0) should take it.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: Optional[int] = None

  @property
  def held(self) -> bool:
    return self._fd is not None

  def _holder(self, fd: int) -> str:
    try:
      text = os.pread(fd, 4096, 0).decode('utf-8', 'replace').split()
    except OSError:
      text = []
    if len(text) >= 3:
      pid, host, since = text[0], text[1], ' '.join(text[2:])
      return f'pid {pid} on host {host}, since {since}'
    return 'holder unknown'

  def acquire(self) -> 'WorkdirLock':
    if self._fd is not None:
      return self
    try:
      os.makedirs(self.workdir, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)   # close-on-exec by default
    except OSError as e:
      raise WorkdirError(describe_os_error(e, f'locking {self.workdir}')) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = self._holder(fd)
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise WorkdirError(f'{self.workdir} is in use by another training ({holder}); wait '
                           f'for it or choose another --workdir') from None
      raise WorkdirError(describe_os_error(e, f'locking {self.workdir}')) from e
    try:
      since = time.strftime('%Y-%m-%dT%H:%M:%S%z')
      os.ftruncate(fd, 0)
      os.pwrite(fd, f'{os.getpid()} {socket.gethostname()} {since}\n'.encode(), 0)
    except OSError as e:
      os.close(fd)     # also releases the lock
      raise WorkdirError(describe_os_error(e, f'locking {self.workdir}')) from e
    self._fd = fd
    return self

  def release(self) -> None:
    fd, self._fd = self._fd, None
    if fd is None:
      return
    try:
      os.ftruncate(fd, 0)
    except OSError:
      pass
    try:
      fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
      os.close(fd)

  def __enter__(self) -> 'WorkdirLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()

  def __del__(self):
    try:
      self.release()
    except Exception:   # noqa: BLE001 - interpreter shutdown
      pass


# ----------------------------------------------------------------------------- metrics


def read_metrics(path: str, up_to_step: Optional[int] = None,
                 warn: Callable[[str], object] = print) -> List[dict]:
  """Rows of a metrics.jsonl file (missing file: []), keeping rows with step <= up_to_step.

  A broken last line (partial write from a crash or a full disk) is dropped with a one-line
  warning; a broken line followed by good ones raises WorkdirError. Blank lines are ignored.
  """
  try:
    with open(path, 'rb') as f:
      raw_lines = f.read().split(b'\n')
  except FileNotFoundError:
    return []
  except OSError as e:
    raise WorkdirError(describe_os_error(e, 'reading metrics')) from e

  numbered = [(i + 1, line) for i, line in enumerate(raw_lines) if line.strip(b' \t\r\0')]
  rows = []
  for position, (number, line) in enumerate(numbered):
    problem = None
    try:
      row = json.loads(line.decode('utf-8'))
      if not isinstance(row, dict):
        problem = 'not a JSON object'
      elif not isinstance(row.get('step'), int) or isinstance(row.get('step'), bool):
        problem = 'no integer "step"'
    except (UnicodeDecodeError, ValueError) as e:
      problem = f'not valid JSON ({e})'
    if problem is not None:
      if position == len(numbered) - 1:
        warn(f'warning: dropped broken last line {number} of {path} ({problem}; an interrupted '
             f'write?)')
        break
      raise WorkdirError(f'{path} line {number} is broken ({problem}) and is followed by good '
                         f'lines; repair or remove that line')
    if up_to_step is None or row['step'] <= up_to_step:
      rows.append(row)
  return rows
