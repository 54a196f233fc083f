#!/bin/sh
# Compiler launcher for the header self-containment checks: the compiler parses
# and checks the translation unit (-fsyntax-only, dependency file included) and
# generates no code, then the object file the build expects is left empty.
# Nothing links these objects; what is checked is that each header compiles alone.
out=
prev=
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
"$@" -fsyntax-only || exit $?
[ -n "$out" ] && : > "$out"
exit 0
