use serde_json::json;
use webjit_engine::{DeviceOptions, Engine, Result};

pub fn run(as_json: bool) -> Result<()> {
    let engine = Engine::new_blocking(DeviceOptions::default())?;
    let p = engine.profile();
    let info = &engine.gpu.info;
    let v = json!({
        "adapter": p.name,
        "backend": p.backend,
        "device_type": format!("{:?}", info.device_type),
        "vendor": format!("0x{:04x}", p.vendor),
        "device": format!("0x{:04x}", p.device),
        "driver": p.driver,
        "features": {
            "shader_f16": p.f16,
            "subgroups": p.subgroups.map(|s| json!({"min_size": s.min_size, "max_size": s.max_size})),
            "timestamp_query": p.timestamps,
        },
        "limits": p.limits,
        "fingerprint": p.fingerprint(),
    });
    if as_json {
        println!("{v}");
    } else {
        println!("adapter      {} ({:?})", p.name, info.device_type);
        println!("backend      {}", p.backend);
        println!("vendor/dev   0x{:04x} / 0x{:04x}", p.vendor, p.device);
        println!("driver       {}", p.driver);
        println!("shader-f16   {}", p.f16);
        match p.subgroups {
            Some(s) => println!("subgroups    yes, size {}..{}", s.min_size, s.max_size),
            None => println!("subgroups    no"),
        }
        println!("timestamps   {}", p.timestamps);
        let l = &p.limits;
        println!("limits       {} invocations/workgroup, {} B workgroup memory, {} storage buffers/stage",
            l.max_compute_invocations_per_workgroup, l.max_compute_workgroup_storage_size, l.max_storage_buffers_per_shader_stage);
        println!(
            "             max storage binding {} MiB, max buffer {} MiB",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        );
        println!("fingerprint  {}", p.fingerprint());
    }
    Ok(())
}
