# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ruleset layer: whole owned iptables chains, applied in one ``iptables-restore --noflush``.

- :mod:`.parse`    tokenising and quoting like iptables-restore/-save, parsing ``iptables-save``.
- :mod:`.canon`    a rule as written -> the rule(s) iptables will print back (canonical form).
- :mod:`.names`    chain-name rules, kube-proxy's hashed chain names, ownership markers.
- :mod:`.flavour`  which iptables (legacy or nft) the host uses, detected like kube-proxy.
- :mod:`.planner`  desired chains/jumps + observed tables -> one restore text (plain data).
- :mod:`.apply`    runs the restore, explains failures with context, rolls back.
- :mod:`.core`     the module's entry point: params + injected runner -> Plan.

Nothing here imports AnsibleModule; the command runner is passed in.
"""
from __future__ import annotations
