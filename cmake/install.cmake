# Installation and the Debian package. Included from the top-level CMakeLists.txt.
#
#   cmake --install build --prefix /usr/local        # bin/bertune, share/bertune/models, share/doc/bertune
#   (cd build && cpack -G DEB)                      # build/bertune_<version>_<arch>.deb
#
# The installed binary finds the shipped models as ../share/bertune/models beside
# itself (src/util/paths.cc), so the tree can be moved as a whole.
include(GNUInstallDirs)
# cpack packages what `cmake --build build` built (bertune); it does not build the
# tests and benchmarks first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
install(TARGETS bertune RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/models/ DESTINATION ${CMAKE_INSTALL_DATADIR}/bertune/models)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_PACKAGE_NAME bertune)
set(CPACK_PACKAGE_VENDOR bertune)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "Fine-tune, evaluate, pretrain and serve BERT models natively (HF-exact checkpoints)")
set(CPACK_PACKAGE_CONTACT "bertune maintainers <bertune@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
# dpkg-shlibdeps derives the libraries the binary links (libcurl4, libutf8proc2,
# libzip4, zlib1g, libgomp1, libssl3, libstdc++6, ...). OpenBLAS is opened at run
# time (dlopen of its OpenMP build, src/kernels/cpu/gemm_cpu.cc), so no linker
# record shows it: it is named here.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libopenblas0-openmp")
include(CPack)
