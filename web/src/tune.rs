//! `engine.tune(budgetMs, onReport)`: tunes the kernels of the text model loaded last, on this
//! device, within the budget; each problem's result is reported as it lands. Winners are used
//! from the next op on; the page persists them with `exportTuning` (IndexedDB in the package).

use wasm_bindgen::prelude::*;
use webjit_engine::tune::{geomean_speedup, PlanOptions, TunePlan, TuneReport};

use crate::state::Slot;
use crate::{invalid, js_err, js_error, now_ms, WebEngine};

#[wasm_bindgen(js_class = Engine)]
impl WebEngine {
    /// Tunes the kernels of the text model loaded last within `budget_ms`. `on_report`, if
    /// given, is called with each problem's report as JSON. `int8` also tries the int8
    /// matvec path (8-bit activations: faster where the device has a fast packed dot
    /// product, results differ slightly). Resolves to the whole report:
    /// `{kernels: [...], spent_ms, geomean_speedup, records}`.
    pub fn tune(
        &self,
        budget_ms: f64,
        on_report: Option<js_sys::Function>,
        int8: Option<bool>,
    ) -> Result<js_sys::Promise, JsValue> {
        // Approximate candidates (the int8 matvec) only when asked, as natively.
        let exact = !int8.unwrap_or(false);
        self.check()?;
        if !(budget_ms.is_finite() && budget_ms > 0.0) {
            return Err(invalid(format!("budgetMs {budget_ms} must be positive")));
        }
        let slot = self
            .current
            .borrow()
            .upgrade()
            .ok_or_else(|| js_err("INVALID_STATE", "load a text model before tuning"))?;
        let engine = self.inner.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let taken = std::mem::replace(&mut *slot.borrow_mut(), Slot::Busy);
            let Slot::Ready(inner) = taken else {
                *slot.borrow_mut() = taken;
                return Err(js_err("BUSY", "the model is busy (generating or tuning)"));
            };
            let t0 = now_ms();
            let clock = || now_ms() / 1e3;
            let mut inner = inner;
            // The plan records the model's steps, which uses its sampler: a generation in
            // progress ends here (its last token stays pending, as after `stop()`).
            if let Some(mut r) = inner.running.take() {
                inner.session.stop(&mut r.gen);
            }
            let mut report = |r: &TuneReport, total: usize| {
                if let Some(f) = &on_report {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["total"] = total.into();
                    let _ = f.call1(&JsValue::NULL, &v.to_string().into());
                }
            };
            let plan = TunePlan::capture(&engine, &mut inner.session, &PlanOptions::default());
            let res = match plan {
                Ok(plan) => {
                    plan.tune(&engine, budget_ms / 1e3, exact, &clock, &mut report)
                        .await
                }
                Err(e) => Err(e),
            };
            {
                let mut s = slot.borrow_mut();
                if matches!(*s, Slot::Busy) {
                    *s = Slot::Ready(inner);
                }
            }
            let reports = res.map_err(js_error)?;
            let geo = geomean_speedup(&reports);
            Ok(JsValue::from_str(
                &serde_json::json!({
                    "kernels": reports,
                    "spent_ms": now_ms() - t0,
                    "geomean_speedup": geo,
                    "records": engine.export_tuning().len(),
                })
                .to_string(),
            ))
        }))
    }
}
