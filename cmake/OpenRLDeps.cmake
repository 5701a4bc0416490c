# Third-party dependencies. Why each one: docs/dependencies.md.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(GTest REQUIRED)
find_package(Boost 1.74 REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
# libxsmm (JIT small-matrix GEMM kernels for CPU decode steps) is optional: a machine without it
# (a GPU host we cannot install packages on) builds without model::PackedLinear's fast path.
pkg_check_modules(LIBXSMM IMPORTED_TARGET libxsmm libxsmmnoblas)

# libtorch from the pinned PyTorch wheel, linked by path (the wheel's CMake package wants a CUDA
# toolkit that CPU machines lack). On a CUDA machine libtorch_cuda is linked as well.
if(OPENRL_WITH_TORCH)
  if(NOT EXISTS "${OPENRL_PYTHON}")
    message(FATAL_ERROR "OPENRL_PYTHON=${OPENRL_PYTHON} not found: run `make setup` first")
  endif()
  execute_process(
    COMMAND "${OPENRL_PYTHON}" -c "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
    OUTPUT_VARIABLE _torch_info RESULT_VARIABLE _torch_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "cannot import torch with ${OPENRL_PYTHON}")
  endif()
  string(REPLACE "\n" ";" _torch_info "${_torch_info}")
  list(GET _torch_info 0 TORCH_DIR)
  list(GET _torch_info 1 TORCH_CXX11_ABI)
  list(GET _torch_info 2 TORCH_VERSION)
  message(STATUS "libtorch ${TORCH_VERSION} from ${TORCH_DIR} (CXX11 ABI=${TORCH_CXX11_ABI})")
  set(_torch_libs "${TORCH_DIR}/lib/libtorch_cpu.so" "${TORCH_DIR}/lib/libc10.so")
  if(EXISTS "${TORCH_DIR}/lib/libtorch_cuda.so" AND OPENRL_WITH_CUDA)
    list(APPEND _torch_libs "${TORCH_DIR}/lib/libtorch_cuda.so" "${TORCH_DIR}/lib/libc10_cuda.so")
  endif()
  add_library(openrl_torch INTERFACE)
  target_include_directories(openrl_torch SYSTEM INTERFACE
    "${TORCH_DIR}/include" "${TORCH_DIR}/include/torch/csrc/api/include")
  target_compile_definitions(openrl_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${TORCH_CXX11_ABI})
  target_link_libraries(openrl_torch INTERFACE ${_torch_libs})
  target_link_options(openrl_torch INTERFACE "-Wl,-rpath,${TORCH_DIR}/lib" "-Wl,--no-as-needed")
  # ATen's at::parallel_for is a header template: with an OpenMP libtorch it splits the work
  # over threads only where the caller is compiled with OpenMP (_OPENMP), and otherwise runs the
  # whole range on the calling thread. Our own kernels (model/packed_linear, model/decode_kernels)
  # use it, so everything built on libtorch compiles with OpenMP. At run time libgomp.so.1 resolves
  # to the wheel's copy (the rpath above), the one runtime libtorch itself uses.
  file(STRINGS "${TORCH_DIR}/include/ATen/Config.h" _torch_openmp REGEX "define AT_PARALLEL_OPENMP 1")
  if(_torch_openmp)
    target_compile_options(openrl_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fopenmp>)
    if(EXISTS "${TORCH_DIR}/lib/libgomp.so.1")
      target_link_libraries(openrl_torch INTERFACE "${TORCH_DIR}/lib/libgomp.so.1")
    else()
      find_package(OpenMP REQUIRED COMPONENTS CXX)
      target_link_libraries(openrl_torch INTERFACE OpenMP::OpenMP_CXX)
    endif()
  endif()
endif()
