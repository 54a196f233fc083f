# cmake -DKEEL_SOURCE_DIR=<root> -P cmake/check_layering.cmake
#
# Checks the include graph of include/keel against the module graph in
# KeelModules.cmake, so a module cannot quietly start to depend on another:
#   1. a header includes keel headers only of its own module and of the
#      modules it builds on (KEEL_<m>_REQUIRES, transitively);
#   2. a private header (a path with a detail/ part) includes public headers
#      only of its own module, of the modules its module names in
#      KEEL_<m>_REQUIRES, and of the core's foundation (KEEL_FOUNDATION); a
#      private header of the core includes only the foundation;
#   3. no header includes another module's private (detail/) header, except
#      the core's dependency-free ones listed in KEEL_SHARED_DETAIL;
#   4. no header names another module's internals: a qualified use
#      `...detail::Name` in a header of module Y is an error when every
#      header that mentions Name unqualified (its declaration among them;
#      the using header itself only if it seems to declare Name) belongs to
#      other modules, unless one of those is a shared detail or foundation
#      header. (A textual check: comments are skipped; a name
#      declared in no keel header, such as Boost's, is not looked at.)
# Forwarding headers kept for old include paths are checked like any other.
# Prints every violation and fails when there is one.
cmake_minimum_required(VERSION 3.22)
include("${KEEL_SOURCE_DIR}/cmake/KeelModules.cmake")

# Core private headers any module may use: they depend on nothing but the
# standard library (assert, cache-line size and pause, the HTTP status table
# that json.hpp publishes and Error::http_status() keeps working with, the SQL
# excerpt that the SQLite and PostgreSQL errors quote).
set(KEEL_SHARED_DETAIL "keel/detail/assert.hpp" "keel/detail/cpu_relax.hpp" "keel/detail/http_status.hpp"
    "keel/detail/sql_excerpt.hpp")
# The vocabulary every module's machinery speaks: errors, results, logging.
set(KEEL_FOUNDATION "keel/errc.hpp" "keel/error.hpp" "keel/result.hpp" "keel/logger.hpp" "keel/backoff.hpp")

file(GLOB_RECURSE _headers RELATIVE "${KEEL_SOURCE_DIR}/include"
     "${KEEL_SOURCE_DIR}/include/keel/*.hpp" "${KEEL_SOURCE_DIR}/include/keel/*.inc")
set(_errors "")
foreach(_h IN LISTS _headers)
  keel_module_of_header("${_h}" _m)
  if(_m STREQUAL "keel")
    continue()  # <keel/keel.hpp> includes everything by design
  endif()
  keel_module_closure(_allowed ${_m})
  file(STRINGS "${KEEL_SOURCE_DIR}/include/${_h}" _lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]keel/")
  foreach(_l IN LISTS _lines)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"].*$" "\\1" _inc "${_l}")
    keel_module_of_header("${_inc}" _im)
    if(NOT _im IN_LIST _allowed)
      list(APPEND _errors "${_h} (module ${_m}) includes ${_inc} (module ${_im}), which ${_m} does not build on")
      continue()
    endif()
    set(_h_private FALSE)
    set(_inc_private FALSE)
    if(_h MATCHES "/detail/")
      set(_h_private TRUE)
    endif()
    if(_inc MATCHES "/detail/")
      set(_inc_private TRUE)
    endif()
    # A module's private header may use the public API of a module it
    # declares it builds on (the graph names that dependency, so nothing
    # hides); inside the core, whose parts (result, channel, lock-free, SIMD)
    # are separate concerns in one target, a private header reaches only the
    # foundation.
    if(_h_private AND NOT _inc_private AND NOT _inc IN_LIST KEEL_FOUNDATION
       AND (_m STREQUAL "core" OR (NOT _im STREQUAL _m AND NOT _im IN_LIST KEEL_${_m}_REQUIRES)))
      list(APPEND _errors "${_h} (private, module ${_m}) includes ${_inc}, a public header of module ${_im}")
    endif()
    if(_inc_private AND NOT _im STREQUAL _m AND NOT _inc IN_LIST KEEL_SHARED_DETAIL)
      list(APPEND _errors "${_h} (module ${_m}) includes ${_inc}, a private header of module ${_im}")
    endif()
  endforeach()
endforeach()

# Rule 4: every header's code (comments removed), its module and path.
set(_ids "")
foreach(_h IN LISTS _headers)
  string(MAKE_C_IDENTIFIER "${_h}" _id)
  list(APPEND _ids ${_id})
  file(READ "${KEEL_SOURCE_DIR}/include/${_h}" _text)
  string(REGEX REPLACE "//[^\n]*" "" _text "${_text}")
  # Keep it out of CMake's list splitting.
  string(REPLACE ";" " " _text "${_text}")
  set(_code_${_id} "${_text}")
  keel_module_of_header("${_h}" _mod_${_id})
  set(_path_${_id} "${_h}")
endforeach()
foreach(_id IN LISTS _ids)
  set(_m "${_mod_${_id}}")
  if(_m STREQUAL "keel")
    continue()
  endif()
  string(REGEX MATCHALL "[A-Za-z_:]*detail::[A-Za-z_][A-Za-z0-9_]*" _uses "${_code_${_id}}")
  list(REMOVE_DUPLICATES _uses)
  foreach(_u IN LISTS _uses)
    if(_u MATCHES "^(::)?(boost|std|fmt|spdlog|nlohmann|SQLite)::")
      continue()
    endif()
    string(REGEX REPLACE "^.*detail::" "" _name "${_u}")
    set(_owners "")
    set(_shared FALSE)
    foreach(_oid IN LISTS _ids)
      # The using header itself counts only where it declares the name: code
      # reopening another module's detail namespace mentions it unqualified.
      if(_oid STREQUAL _id)
        string(REGEX REPLACE
                             "(^|[^A-Za-z0-9_])(return|co_return|co_await|co_yield|throw|else|case|new|delete|not|and|or|public|protected|private|virtual)[ \t\n]"
                             "\\1#" _decl "${_code_${_oid}}")
        if(NOT _decl MATCHES "(class|struct|union|enum|concept|namespace|using)[ \t\n]+${_name}([^A-Za-z0-9_]|$)"
           AND NOT _decl MATCHES "[A-Za-z0-9_>&*][ \t\n]+${_name}[ \t\n]*[=({]")
          continue()
        endif()
      endif()
      if(_code_${_oid} MATCHES "(^|[^:A-Za-z0-9_])${_name}([^A-Za-z0-9_]|$)")
        list(APPEND _owners "${_mod_${_oid}}")
        if(_path_${_oid} IN_LIST KEEL_SHARED_DETAIL OR _path_${_oid} IN_LIST KEEL_FOUNDATION)
          set(_shared TRUE)
        endif()
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _owners)
    if(_owners AND NOT _shared AND NOT _m IN_LIST _owners)
      string(REPLACE ";" ", " _owners "${_owners}")
      list(APPEND _errors "${_path_${_id}} (module ${_m}) names ${_u}, internal to module ${_owners}")
    endif()
  endforeach()
endforeach()

list(LENGTH _headers _n)
if(_errors)
  foreach(_e IN LISTS _errors)
    message("layering: ${_e}")
  endforeach()
  list(LENGTH _errors _ne)
  message(FATAL_ERROR "layering: ${_ne} violation(s) in ${_n} headers")
endif()
message(STATUS "layering: ${_n} headers follow the module graph")
