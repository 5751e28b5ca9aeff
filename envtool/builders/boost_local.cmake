# envtool: python_backend downloads Boost headers with ExternalProject_Add(boostorg URL ...), and the
# URL of old branches is dead (boostorg.jfrog.io). Loaded through CMAKE_PROJECT_INCLUDE, this file
# replaces that one target with a link to local headers, without patching the sources.
# ExternalProject.cmake has include_guard(GLOBAL), so the project's own include() keeps this override.
include(ExternalProject)
macro(ExternalProject_Add name)
  if("${name}" STREQUAL "boostorg")
    add_custom_target(boostorg
      COMMAND ${CMAKE_COMMAND} -E create_symlink "${ENVTOOL_BOOST_INCLUDE}/boost" "${CMAKE_BINARY_DIR}/boost"
      COMMENT "envtool: Boost headers from ${ENVTOOL_BOOST_INCLUDE}")
  else()
    _ExternalProject_Add(${name} ${ARGN})
  endif()
endmacro()

# envtool --pybind11 / a compiler newer than the release's: python_backend builds with -Werror, and a newer
# pybind11 (deprecations) or GCC (new warnings) stops it on warnings alone. With ENVTOOL_RELAX_WERROR the
# targets' own -Werror becomes -Wno-error (CMAKE_CXX_FLAGS cannot: the target's flag comes later). This file
# is included at every project(): define the override once, or the second definition calls itself.
get_property(_envtool_relaxed GLOBAL PROPERTY ENVTOOL_RELAXED_WERROR)
if(ENVTOOL_RELAX_WERROR AND NOT _envtool_relaxed)
  set_property(GLOBAL PROPERTY ENVTOOL_RELAXED_WERROR TRUE)
  function(target_compile_options)
    set(_envtool_args ${ARGV})
    list(TRANSFORM _envtool_args REPLACE "-Werror" "-Wno-error")
    _target_compile_options(${_envtool_args})
  endfunction()
endif()

# googletest < 1.11 (Ubuntu 20.04's and Debian 11's /usr/src/googletest, used offline) defines gtest and
# gtest_main but not the GTest::gtest aliases that common's tests link from r23.04 on (its own pin has them).
# Add them where missing, at the end of the top-level configure (before targets are resolved).
if(NOT COMMAND _envtool_gtest_aliases AND CMAKE_VERSION VERSION_GREATER_EQUAL 3.19)
  function(_envtool_gtest_aliases)
    foreach(_envtool_t gtest gtest_main gmock gmock_main)
      if(TARGET ${_envtool_t} AND NOT TARGET GTest::${_envtool_t})
        add_library(GTest::${_envtool_t} ALIAS ${_envtool_t})
      endif()
    endforeach()
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _envtool_gtest_aliases)
endif()
