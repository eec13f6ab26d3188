# -*- coding: utf-8 -*-
# Copyright: podnet.fabric contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's version, stamped on what it leaves on a node (restore state, the restorer).
A unit test keeps it equal to galaxy.yml's."""

COLLECTION_VERSION = "0.1.0"
