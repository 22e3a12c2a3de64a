# autoscale_library(): one installed library of this project, mirroring a Bazel cc_library.
#
#   autoscale_library(core
#     SRCS autoscale/core/goal.cc ...        # relative to the top of the tree (or absolute)
#     HDRS autoscale/core/goal.h ...         # installed under include/ at the same path
#     DEPS autoscale::base absl::status ...  # CMake targets (PUBLIC: static libraries)
#     PC_REQUIRES autoscale-base absl_status # the same dependencies as pkg-config modules
#   )
#
# defines the target autoscale_<name> (alias autoscale::<name>, exported as autoscale::<name>),
# installs lib/libautoscale_<name>.a (or .so with BUILD_SHARED_LIBS) and the headers, and writes
# lib/pkgconfig/autoscale-<name>.pc (underscores become dashes). Includes are by repository path
# ("autoscale/core/goal.h"), as in the Bazel build; generated headers live in the build tree.
#
# Dependencies are public (Requires:, not Requires.private:), so that `pkg-config --libs` of a
# static library lists everything it needs without --static.

function(autoscale_library name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "SRCS;HDRS;DEPS;PC_REQUIRES")
  set(target autoscale_${name})
  add_library(${target} ${ARG_SRCS})
  add_library(autoscale::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${name}
    OUTPUT_NAME autoscale_${name}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
    POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE -Wall -Wextra $<$<BOOL:${AUTOSCALE_WERROR}>:-Werror>)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})

  install(TARGETS ${target} EXPORT autoscaleTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  foreach(hdr IN LISTS ARG_HDRS)
    if(IS_ABSOLUTE "${hdr}")
      file(RELATIVE_PATH rel "${PROJECT_BINARY_DIR}" "${hdr}")
    else()
      set(rel "${hdr}")
      set(hdr "${PROJECT_SOURCE_DIR}/${hdr}")
    endif()
    get_filename_component(dir "${rel}" DIRECTORY)
    install(FILES "${hdr}" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir})
  endforeach()

  string(REPLACE "_" "-" pc_name "autoscale-${name}")
  list(JOIN ARG_PC_REQUIRES ", " pc_requires)
  # ${pcfiledir}-relative, so the installed tree can be moved.
  file(RELATIVE_PATH pc_to_prefix
    "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
  string(REGEX REPLACE "/$" "" pc_to_prefix "${pc_to_prefix}")
  file(GENERATE OUTPUT "${PROJECT_BINARY_DIR}/pkgconfig/${pc_name}.pc" CONTENT
"prefix=\${pcfiledir}/${pc_to_prefix}
libdir=\${prefix}/${CMAKE_INSTALL_LIBDIR}
includedir=\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}

Name: ${pc_name}
Description: autoscale ${name} library (in-place autoscaling of QEMU VMs)
Version: ${PROJECT_VERSION}
Requires: ${pc_requires}
Cflags: -I\${includedir} -std=c++20
Libs: -L\${libdir} -lautoscale_${name}
")
  install(FILES "${PROJECT_BINARY_DIR}/pkgconfig/${pc_name}.pc"
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

# autoscale_protoc(OUT_VAR PROTOS a.proto ... [GRPC]): runs Debian's protoc (and grpc_cpp_plugin
# with GRPC) on .proto files given relative to the top of the tree; sets OUT_VAR to the generated
# sources and OUT_VAR_HDRS to the headers, which land in the build tree at the same relative path
# ("autoscale/api/config.pb.h"). Imports are relative to the top, as in third_party/proto.bzl;
# google/protobuf/*.proto come from /usr/include.
function(autoscale_protoc out_var)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "GRPC" "" "PROTOS;IMPORTS")
  set(srcs)
  set(hdrs)
  set(inputs)
  foreach(proto IN LISTS ARG_PROTOS)
    string(REGEX REPLACE "\\.proto$" "" base "${proto}")
    if(ARG_GRPC)
      list(APPEND srcs "${PROJECT_BINARY_DIR}/${base}.grpc.pb.cc")
      list(APPEND hdrs "${PROJECT_BINARY_DIR}/${base}.grpc.pb.h")
    else()
      list(APPEND srcs "${PROJECT_BINARY_DIR}/${base}.pb.cc")
      list(APPEND hdrs "${PROJECT_BINARY_DIR}/${base}.pb.h")
    endif()
    list(APPEND inputs "${PROJECT_SOURCE_DIR}/${proto}")
  endforeach()
  set(deps ${inputs})
  foreach(proto IN LISTS ARG_IMPORTS)
    list(APPEND deps "${PROJECT_SOURCE_DIR}/${proto}")
  endforeach()
  if(ARG_GRPC)
    set(flags --grpc_out=${PROJECT_BINARY_DIR} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN})
    set(what "gRPC stubs")
  else()
    set(flags --cpp_out=${PROJECT_BINARY_DIR})
    set(what "messages")
  endif()
  add_custom_command(
    OUTPUT ${srcs} ${hdrs}
    COMMAND protobuf::protoc -I${PROJECT_SOURCE_DIR} ${flags} ${inputs}
    DEPENDS ${deps} protobuf::protoc
    COMMENT "protoc: ${what} of ${ARG_PROTOS}"
    VERBATIM)
  set(${out_var} ${srcs} PARENT_SCOPE)
  set(${out_var}_HDRS ${hdrs} PARENT_SCOPE)
endfunction()
