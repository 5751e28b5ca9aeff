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
