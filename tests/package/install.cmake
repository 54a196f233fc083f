# cmake -DBIN=<build dir> -DPREFIX=<dir> -P install.cmake
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BIN}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install failed (${rc})")
endif()
foreach(f share/cmake/keel/keelConfig.cmake share/cmake/keel/keelConfigVersion.cmake
          include/keel/result.hpp)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "install is missing ${f}")
  endif()
endforeach()
