# cmake -DEXE=<program> -DEXPECTED=<file or empty> -DWORKDIR=<dir> -P run_snippet.cmake
# Runs a documentation snippet in an empty directory; its exit status must be
# 0 and, when EXPECTED names a file, its standard output must equal it.
file(REMOVE_RECURSE "${WORKDIR}")
file(MAKE_DIRECTORY "${WORKDIR}")
execute_process(COMMAND "${EXE}" WORKING_DIRECTORY "${WORKDIR}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 30)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "snippet exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(EXPECTED)
  file(READ "${EXPECTED}" want)
  if(NOT out STREQUAL want)
    message(FATAL_ERROR "snippet output differs from the page\n--- page:\n${want}--- program:\n${out}")
  endif()
endif()
message(STATUS "snippet ok")
