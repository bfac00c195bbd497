# Helpers shared by every CMakeLists.txt of the project.

# stead_module(NAME [DEPS...]): an OBJECT library stead_NAME from the C files
# in src/NAME/. Internal headers of every module are reachable as
# "NAME/file.h" from src/.
function(stead_module name)
  file(GLOB srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.c)
  if(NOT srcs)
    return()
  endif()
  add_library(stead_${name} OBJECT ${srcs})
  target_include_directories(stead_${name} PUBLIC
    ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(stead_${name} PUBLIC Threads::Threads m)
  foreach(dep IN LISTS ARGN)
    if(TARGET stead_${dep})
      target_link_libraries(stead_${name} PUBLIC stead_${dep})
    endif()
  endforeach()
endfunction()

# stead_test(NAME SOURCES a.c b.c [LIBS ...] [LABELS ...] [TIMEOUT s])
# A cmocka test binary registered with ctest. LIBS default to stead_static.
# Label "concurrency" marks the tests that also run under TSan.
function(stead_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_LIBS)
    set(T_LIBS stead_static)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_include_directories(${name} PRIVATE
    ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${T_LIBS} cmocka Threads::Threads m)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "STEAD_SOURCE_DIR=${PROJECT_SOURCE_DIR};STEAD_BINARY_DIR=${PROJECT_BINARY_DIR}")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()

# stead_fuzz(NAME SOURCE src.c CORPUS dir [LIBS ...])
# Always: fuzz_NAME_replay, the target linked with a small driver that feeds
# every file of the corpus to it once; registered with ctest, so CI replays
# the corpus under the sanitizers. With STEAD_FUZZ=ON (clang): fuzz_NAME, a
# real libFuzzer binary for `make fuzz`.
function(stead_fuzz name)
  cmake_parse_arguments(F "" "SOURCE;CORPUS" "LIBS" ${ARGN})
  if(NOT F_LIBS)
    set(F_LIBS stead_static)
  endif()
  add_executable(fuzz_${name}_replay ${F_SOURCE} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.c)
  target_include_directories(fuzz_${name}_replay PRIVATE
    ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(fuzz_${name}_replay PRIVATE ${F_LIBS} Threads::Threads m)
  add_test(NAME fuzz_${name}_corpus COMMAND fuzz_${name}_replay ${F_CORPUS})
  set_tests_properties(fuzz_${name}_corpus PROPERTIES LABELS "fuzz" TIMEOUT 300)
  if(STEAD_FUZZ)
    add_executable(fuzz_${name} ${F_SOURCE})
    target_include_directories(fuzz_${name} PRIVATE
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
    target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS} Threads::Threads m)
  endif()
endfunction()
