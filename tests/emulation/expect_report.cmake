# Runs PROGRAM with MODE and passes when it fails with a report matching EXPECTED.
execute_process(COMMAND "${PROGRAM}" "${MODE}" RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
if(result EQUAL 0)
  message(FATAL_ERROR "${MODE}: the fault went unreported (exit 0)\n${output}${errors}")
endif()
if(NOT errors MATCHES "${EXPECTED}")
  message(FATAL_ERROR "${MODE}: exit ${result} without the report \"${EXPECTED}\"\n${output}${errors}")
endif()
message(STATUS "${MODE}: reported (exit ${result})")
