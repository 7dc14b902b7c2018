# Installs cumtl from its build folder into a fresh prefix, then configures,
# builds and runs the consumer project against that prefix (ctest runs this).
# With MODE=gpu it runs the program built so before on the GPU instead.
# Inputs: CUMTL_BUILD_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, GENERATOR, MODE.

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "consumer check: ${description} failed (${status}):\n${output}")
  endif()
  message(STATUS "consumer check: ${description}: ok\n${output}")
endfunction()

if(MODE STREQUAL "gpu")
  # 77 (no GPU) is passed on to ctest as a skip (SKIP_REGULAR_EXPRESSION).
  execute_process(COMMAND "${WORK_DIR}/build/consumer" --gpu RESULT_VARIABLE status OUTPUT_VARIABLE output
                  ERROR_VARIABLE output)
  message(STATUS "${output}")
  if(status EQUAL 77)
    message(STATUS "CUMTL_SKIPPED: no usable GPU")
  elseif(NOT status EQUAL 0)
    message(FATAL_ERROR "consumer check: the program on the GPU failed (${status}):\n${output}")
  endif()
  return()
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
run_step("install into ${WORK_DIR}/prefix" ${CMAKE_COMMAND} --install "${CUMTL_BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
run_step("configure" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
         -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release)
run_step("build" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run_step("run the g++-compiled program" "${WORK_DIR}/build/consumer")
