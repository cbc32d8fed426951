# -*- coding: utf-8 -*-
# Copyright: devloop.telepresence contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one policy for the workload's environment values, shared by tp_intercept and tp_info.

The values are cluster secrets. Neither module ever returns them (only their names), so what remains is output the
modules do not compose: the CLI's own words quoted in messages, stderr, an intercept's message. Ansible masks
every no-log value wherever it occurs, also inside other strings, so registering every value garbled the modules'
own fields: a pod with ``MOUNT=false``, ``USER=root`` or ``STATE=ACTIVE`` turned ``--mount=false`` into
``--mount=********``, the client into ``********@host`` and the disposition into ``VALUE_SPECIFIED_IN_NO_LOG_PARAMETER``.

So the modules collect the values as they read them (:func:`remember`) and, just before they exit or fail,
register as no-log values (:func:`protect`) every value except

- values that occur in what the module shows anyway and composed itself (its argv, its parameters, the structured
  fields of its result: names, ids, dispositions, clients, paths): they are not secret there, and masking them would
  only garble those fields; free text the CLI wrote (messages, stderr, stdout) is never counted as shown;
- words and numbers too common to be secrets: booleans, ``null``/``none``, port-like numbers and values shorter
  than MIN_SECRET_LENGTH.
"""

from __future__ import annotations

import re

MIN_SECRET_LENGTH = 4
COMMON_WORDS = frozenset(("true", "false", "yes", "no", "on", "off", "null", "none", "nil"))
PORT_LIKE_RE = re.compile(r"[0-9]{1,5}")
# Result keys holding free text another program wrote: never proof that a value is public.
FREE_TEXT_KEYS = frozenset(("msg", "message", "stderr", "stdout", "error", "warnings", "exception"))
ATTRIBUTE = "_devloop_telepresence_environment"


def remember(module, values):
    """Collect environment values the module has read (kept on the module until :func:`protect`)."""
    seen = getattr(module, ATTRIBUTE, None)
    if seen is None:
        seen = set()
        setattr(module, ATTRIBUTE, seen)
    seen.update(str(value) for value in values if value not in (None, ""))


def remembered(module):
    return set(getattr(module, ATTRIBUTE, None) or ())


def could_be_secret(value):
    return (len(value) >= MIN_SECRET_LENGTH and value.lower() not in COMMON_WORDS
            and not PORT_LIKE_RE.fullmatch(value))


def strings_in(data):
    """Every string (and key) in ``data``, except under free-text keys."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in FREE_TEXT_KEYS:
                continue
            yield str(key)
            yield from strings_in(value)
    elif isinstance(data, (list, tuple, set, frozenset)):
        for item in data:
            yield from strings_in(item)
    elif data is not None:
        yield str(data)


def hidden_values(values, *shown):
    """The values to register as no-log values given what the module shows of its own (see the module doc)."""
    texts = list(strings_in(list(shown)))
    return sorted(value for value in values
                  if could_be_secret(value) and not any(value in text for text in texts))


def protect(module, *shown):
    """Register the remembered values Ansible must mask in the result, warnings and logs; call right before exit."""
    module.no_log_values.update(hidden_values(remembered(module), *shown))


# ---------------------------------------------------------------------------------------------------------------
# Helm values (tp_manager values_no_log)
# ---------------------------------------------------------------------------------------------------------------

HIDDEN = "(hidden: values_no_log)"
HIDDEN_OLD = "(hidden, differs: old value)"
HIDDEN_NEW = "(hidden, differs: new value)"


def differing_paths(left, right, prefix=()):
    """Key paths (tuples) of the leaves that differ between two nested values."""
    if isinstance(left, dict) and isinstance(right, dict):
        paths = set()
        for key in set(left) | set(right):
            if key not in left or key not in right:
                paths.add(prefix + (key,))
            else:
                paths |= differing_paths(left[key], right[key], prefix + (key,))
        return paths
    return set() if left == right else {prefix}


def masked(value, differing, label, prefix=()):
    """``value`` with every leaf replaced by a placeholder; leaves under a differing path say so."""
    if isinstance(value, dict):
        return {key: masked(item, differing, label, prefix + (key,)) for key, item in value.items()}
    if value is None and not prefix:
        return None
    return label if any(prefix[:len(path)] == path for path in differing) else HIDDEN


def hide_diff_values(diff):
    """The diff with its ``values`` masked on both sides; the keys that differ stay visible as differing lines."""
    if not isinstance(diff, dict):
        return diff
    before = (diff.get("before") or {}).get("values")
    after = (diff.get("after") or {}).get("values")
    differing = differing_paths(before if before is not None else {}, after if after is not None else {})
    hidden = dict(diff)
    for side, value, label in (("before", before, HIDDEN_OLD), ("after", after, HIDDEN_NEW)):
        if isinstance(diff.get(side), dict):
            hidden[side] = dict(diff[side], values=masked(value, differing, label))
    return hidden


def hidden_invocation(params, *names):
    """``invocation`` for exit_json/fail_json with the options ``names`` masked (key paths kept)."""
    args = dict(params)
    for name in names:
        if args.get(name) is not None:
            args[name] = masked(args[name], set(), HIDDEN)
    return {"module_args": args}
