# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment(object):
    # Every podnet.fabric module plans first and applies only outside check mode.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target is a Linux host with network namespaces.
    support: full
    platforms: posix
"""

    # For modules that act inside a named network namespace instead of the caller's.
    NETNS = r"""
options:
  netns:
    description:
      - Name of the network namespace (as in C(/run/netns/NAME)) to act in.
      - Omit to act in the network namespace the module runs in (the host's).
      - A namespace that does not exist is an error; nothing is created in that case.
    type: str
"""
