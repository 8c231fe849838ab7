// How every browser test and benchmark launches Debian's Chromium: one list of flags, so that
// the tests, the demo test and the benchmarks measure the same browser.
//   CHROMIUM     the executable (WEBJIT_CHROMIUM, default /usr/bin/chromium)
//   BASE_ARGS    a quiet headless profile: no sandbox (containers run as root), no QUIC, no
//                first-run UI, no background traffic (component updates, sync)
//   WEBGPU_ARGS  WebGPU on, on SwiftShader where there is no GPU (Linux keeps WebGPU behind
//                --enable-unsafe-webgpu; SwiftShader is refused without the second flag)
//   chromiumArgs({webgpu})  BASE_ARGS, plus WEBGPU_ARGS unless webgpu is false, plus EXTRA_ARGS
//   EXTRA_ARGS   WEBJIT_CHROMIUM_EXTRA_ARGS split on whitespace, appended last (empty when unset):
//                e.g. Dawn on Vulkan with a real GPU in a headless machine,
//                '--enable-features=Vulkan --use-angle=vulkan --disable-vulkan-surface'
export const CHROMIUM = process.env.WEBJIT_CHROMIUM || '/usr/bin/chromium';

export const BASE_ARGS = Object.freeze([
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]);

export const WEBGPU_ARGS = Object.freeze(['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader']);

export const EXTRA_ARGS = Object.freeze((process.env.WEBJIT_CHROMIUM_EXTRA_ARGS || '').split(/\s+/).filter(Boolean));

export function chromiumArgs({ webgpu = true } = {}) {
  return webgpu ? [...BASE_ARGS, ...WEBGPU_ARGS, ...EXTRA_ARGS] : [...BASE_ARGS, ...EXTRA_ARGS];
}
